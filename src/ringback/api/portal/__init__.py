"""The court web portal at /portal/: server-rendered pages (jinja2 templates, a vendored
stylesheet and script, no build step) on the same registry functions as the API."""

from ringback.api.portal.site import register

__all__ = ["register"]
