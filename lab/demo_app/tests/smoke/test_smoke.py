"""The release's smoke tests, run in a staging venv (production venvs have no pytest): the app
module loads and answers, and the server that runs it imports."""

import importlib.util
from pathlib import Path

RELEASE = Path(__file__).resolve().parents[2]


def load_webapp():
    spec = importlib.util.spec_from_file_location("webapp", RELEASE / "webapp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_version_answers():
    seen = {}
    answer = load_webapp().application({"PATH_INFO": "/version"}, lambda s, _: seen.update(s=s))
    body = b"".join(answer)
    assert seen["s"] == "200 OK"
    assert b'"version"' in body


def test_gunicorn_imports():
    import gunicorn.app.wsgiapp

    assert gunicorn.app.wsgiapp.WSGIApplication
