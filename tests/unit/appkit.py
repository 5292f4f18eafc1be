"""The in-process App the wiring tests drive: a config writer for one account on the
simulator, and `start`, which leaves the App to the `apps` fixture to close
(tests/unit/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from exporter import config
from exporter.app import App, Seams

KEY_ID = "LTAI5tCliTestKeyId000001"
SECRET = "cli-Secret-Value-0a1b2c3d"
REGIONS = ("cn-hangzhou", "cn-shanghai")


def static_keys() -> str:
    return f"      access_key_id: {KEY_ID}\n      access_key_secret: {SECRET}\n"


def write_config(
    path: Path, endpoint: str, credentials: str = "", **settings: object
) -> config.Config:
    globals_ = {
        "lookback": "1h",
        "cache_ttl": "30s",
        "request_timeout": "5s",
        "overlap": "1m",
        **settings,
    }
    text = "".join(f"{k}: {v}\n" for k, v in globals_.items())
    text += (
        "accounts:\n  - name: prod\n"
        f"    regions: [{', '.join(REGIONS)}]\n"
        f'    endpoint: "{endpoint}/{{region}}/"\n'
        "    max_requests_per_second: 1000\n"
        "    credentials:\n" + (credentials or static_keys())
    )
    path.write_text(text)
    return config.load(str(path), {})


def start(apps: list[App], cfg: config.Config, path: Path, seams: Seams | None = None) -> App:
    app = App(cfg, {}, str(path), seams=seams or Seams())
    apps.append(app)
    return app
