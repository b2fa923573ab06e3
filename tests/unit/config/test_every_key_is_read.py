"""Every documented key is read by the code: a key that nothing reads does not do what the reference says.

The keys are the reference's (:func:`~mssql2pg.config.reference.documented_keys`, the walk that renders
``docs/configuration.md``); what "read" means is decided by :mod:`tests.unit.config.key_readers`, which
follows the configuration's types through ``src/mssql2pg``. The few keys read where that walk cannot see are
listed in :data:`READ_ELSEWHERE`, each with the function that reads it; the entry is checked, so it fails
when that function stops reading the key or the section stops being handed to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mssql2pg.config import RetrySettings
from mssql2pg.config.reference import documented_keys
from tests.unit.config.key_readers import PACKAGE, Findings, function_reads, member_reads, scan_module, scan_package


@dataclass(frozen=True)
class ReadBy:
    """``function`` of ``module`` (relative to ``src/mssql2pg``) reads the key. ``handed_to``: the callee
    the section is passed to whole (checked in the walk's handovers); ``None`` when the reader takes the raw
    value before the model exists."""

    module: str
    function: str
    handed_to: str | None
    why: str


_RETRY = (
    "config.retry is handed to pipeline.observed.retry_policy, which builds retry.Retry.from_settings over it: "
    "Retry keeps max_attempts, its Backoff reads the delays (both through the BackoffSettings protocol)"
)
_LOADED_FROM_FILE = "the loader reads the file into 'password' before validation (so the URL and logs never see it)"

READ_ELSEWHERE: dict[str, ReadBy] = {
    "source.password_file": ReadBy("config/loading.py", "_read_secret_files", None, _LOADED_FROM_FILE),
    "target.password_file": ReadBy("config/loading.py", "_read_secret_files", None, _LOADED_FROM_FILE),
    "retry.initial": ReadBy("retry.py", "Backoff.bounds", "retry_policy", _RETRY),
    "retry.maximum": ReadBy("retry.py", "Backoff.bounds", "retry_policy", _RETRY),
    "retry.multiplier": ReadBy("retry.py", "Backoff.bounds", "retry_policy", _RETRY),
    "retry.jitter": ReadBy("retry.py", "Backoff.delays", "retry_policy", _RETRY),
    "retry.jitter_mode": ReadBy("retry.py", "Backoff.delays", "retry_policy", _RETRY),
    "retry.max_attempts": ReadBy("retry.py", "Retry.from_settings", "retry_policy", _RETRY),
}


@pytest.fixture(scope="module")
def findings() -> Findings:
    return scan_package()


def test_every_documented_key_is_read_by_the_code(findings: Findings) -> None:
    keys = documented_keys()
    read = findings.read_keys(keys) | set(READ_ELSEWHERE)

    unread = [key.dotted for key in keys if key.dotted not in read]

    assert not unread, (
        "documented keys that no code reads (make them do what docs/configuration.md says, or remove them from "
        f"config/schema.py and list them in REMOVED_KEYS): {', '.join(unread)}"
    )


@pytest.mark.parametrize("key", sorted(READ_ELSEWHERE))
def test_a_key_read_where_the_walk_cannot_see_is_read_there(key: str, findings: Findings) -> None:
    reader = READ_ELSEWHERE[key]
    documented = {k.dotted: k for k in documented_keys()}
    assert key in documented, f"READ_ELSEWHERE lists {key}, which is not a documented key"
    name = documented[key].name

    assert function_reads(PACKAGE / reader.module, reader.function, name), (
        f"{reader.module} {reader.function} no longer reads {name!r}; update READ_ELSEWHERE[{key!r}]"
    )
    if reader.handed_to is not None:
        assert (reader.handed_to, documented[key].model) in findings.handovers, (
            f"no code hands the {documented[key].model.__name__} section to {reader.handed_to} any more"
        )
    seen = findings.where(documented[key])
    assert not seen, f"the walk sees {key} read ({', '.join(seen)}): drop it from READ_ELSEWHERE"


# ------------------------------------------------------------------------------- the walk itself can tell


def _reads(source: str) -> set[str]:
    found = Findings()
    scan_module(source, "example.py", member_reads(PACKAGE / "config" / "schema.py"), found)
    return found.read_keys(documented_keys())


def test_the_walk_sees_a_key_read_on_a_typed_configuration() -> None:
    source = """
from mssql2pg.config import Config, TableEntry, load_config

def annotated(config: Config) -> None:
    config.apply.max_batch_rows

def loaded() -> None:
    cfg = load_config("x.yaml")
    settings = cfg.reader
    settings.page_rows

def entry_option(entry: TableEntry, config: Config) -> None:
    entry.delete_mode
    for each in config.tables:
        each.naming
    config.tables.count  # the list, not an entry

class Holder:
    config: Config

    def run(self) -> None:
        self.config.stale_after
        self.config.target.pg8000_params()
"""
    assert _reads(source) == {
        "apply.max_batch_rows",
        "reader.page_rows",
        "tables[].delete_mode",
        "tables[].naming",
        "stale_after",
        "target.url",
        "target.password",
        "target.connect_timeout",
    }


def test_the_walk_ignores_the_same_names_on_other_objects() -> None:
    source = """
from mssql2pg.config import Config
from mssql2pg.sink.applier import ApplySettings

def unrelated(config, settings: ApplySettings, pipeline) -> None:
    config.apply.max_batch_rows
    settings.stale_after
    pipeline.pipeline.name

def shadowed(config: Config) -> None:
    def inner(config) -> None:
        config.reader.page_rows
    config = object()
    config.http.port

# config.log.level in a comment, and in a string: "config.log.format"
"""
    assert _reads(source) == set()


def test_the_walk_records_a_section_handed_to_another_component() -> None:
    source = """
from mssql2pg.config import Config
from mssql2pg.retry import Backoff

def build(config: Config) -> None:
    Backoff(config.retry)
"""
    found = Findings()
    scan_module(source, "example.py", member_reads(PACKAGE / "config" / "schema.py"), found)

    assert found.handovers == {("Backoff", RetrySettings)}
    assert found.read_keys(documented_keys()) == set()
