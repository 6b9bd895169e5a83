"""The subscriptions API (WSGI): ``app`` the application, ``wsgi`` how it is built
and served."""
