# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
PANEL = 'live_search'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'live'
ADD_PANEL = 'searchlight_forward_dashboard.panels.ProjectLiveSearch'
