"""Alerts for the people who run the pipeline: a line on the `artsim.alerts` logger, and a JSON
POST to the webhook `ARTSIM_ALERT_WEBHOOK` names (chat, pager or mail gateway) when it is set."""

from __future__ import annotations

import logging

from artsim_pipeline import settings

alert_log = logging.getLogger("artsim.alerts")


def send_alert(message: str, details: dict) -> None:
    """The alert hook: always a line on the `artsim.alerts` logger; with `ARTSIM_ALERT_WEBHOOK`
    set, also a JSON POST there. A hook that fails is logged, never raised: the alert line has
    already been written."""
    alert_log.error(message)
    url = settings.alert_webhook()
    if url:
        from urllib.parse import urlsplit

        import requests

        try:
            requests.post(url, json={"text": message, **details}, timeout=10).raise_for_status()
        except requests.RequestException as exc:
            # chat webhooks carry their secret in the URL: name the host only
            alert_log.error(f"the alert webhook on {urlsplit(url).hostname} failed: {type(exc).__name__}")
