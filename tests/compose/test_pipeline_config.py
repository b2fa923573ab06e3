"""The pipeline config the stack mounts is valid for the pipeline's own loader, with the stack's secrets.

The environment is the one compose.yaml gives the container, with each /run/secrets/<name> path mapped to
the secret file Compose would mount there.
"""

from __future__ import annotations

from tests.compose.stack_files import PIPELINE_CONFIG, pipeline_config, secret_file, services


def _container_env_on_the_host() -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in services()["pipeline"]["environment"].items():
        text = str(value)
        if text.startswith("/run/secrets/"):
            text = str(secret_file(text.removeprefix("/run/secrets/")))
        env[key] = text
    return env


def test_the_stack_pipeline_config_loads_with_the_stack_secrets() -> None:
    from mssql2pg.config.loading import load_config  # noqa: PLC0415 - the config module is another area's

    config = load_config(PIPELINE_CONFIG, env=_container_env_on_the_host())
    assert config.source.password is not None
    assert config.target.password is not None
    source_password = secret_file("cdc_reader_password").read_text(encoding="utf-8")
    assert config.source.password.get_secret_value() == source_password
    target_password = secret_file("warehouse_password").read_text(encoding="utf-8")
    assert config.target.password.get_secret_value() == target_password
    assert [t.name for t in config.tables] == pipeline_config()["tables"]
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9400)  # noqa: S104 - inside its container
    assert config.log.format == "json"
