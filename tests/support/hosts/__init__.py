"""Small host apps shaped like what people deploy, with flask-appmetrics added.

Each is a package with an app factory: ``shop`` (blueprints, static files, downloads),
``backoffice`` (Flask-Login or Flask-HTTPAuth guarding ``/metrics``), ``tokens_api``
(flask-jwt-extended) and ``assistant`` (the LLM helpers and Flask-Caching).
``wsgi`` drives them the way WSGI servers do.
"""
