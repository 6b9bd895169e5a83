"""searchlight-forward's Horizon plugin: live tables inside Horizon (docs/horizon.md).

The tables (``tables.py``) say which resource types get a panel; the panels
(``panels.py``) register them on Horizon's Project and Admin dashboards through the
enabled files; one view renders a table's frame and one endpoint hands the page the
session's own token (``views.py``); the table logic is one script,
``static/searchlight_forward_dashboard/livetable.js``.
"""
