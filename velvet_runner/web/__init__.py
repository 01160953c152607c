"""The read-only status app: `app` (routes, 405 guard, errors), `api` (JSON and SSE endpoints),
`state` (cached views of the state branch and manifest), `pages` + `templates/` (Jinja2 HTML),
`openapi` (the document, generated from the routes) and `static/` (the page's CSS and script).
"""

from velvet_runner.web.app import create_app, openapi_document, serve

__all__ = ["create_app", "openapi_document", "serve"]
