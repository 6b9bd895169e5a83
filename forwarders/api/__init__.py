"""The HTTP API service (``searchlight-forward-api``, WSGI on waitress): tenants'
subscriptions, live search's first page, Atom feeds and the WebSub hub; ``app`` the
subscriptions application, ``wsgi`` how the whole is built, ``server`` how it is
served, ``status`` the operator endpoints."""
