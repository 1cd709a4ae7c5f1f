"""The staff web console: server-rendered pages (Jinja2, zh and en) on the desk's listener.

``routes`` serves the pages, ``web`` the session, CSRF and rendering, ``pages`` shapes what
they show, ``forms`` turns action forms into the JSON API's bodies, ``i18n`` holds every word.
"""

from services.desk.console.routes import Console, add_console

__all__ = ["Console", "add_console"]
