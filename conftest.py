"""Root pytest configuration: nbval's sanitize file, resolved from the repository root."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def pytest_configure(config):
    if hasattr(config.option, "nbval_sanitize_with") and not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(ROOT / ".ci" / "nbval-sanitize.cfg")
    config.addinivalue_line("markers", "browser: drives JupyterLab/Voila in headless Chromium")
