# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
PANEL = 'live_volumes'
PANEL_DASHBOARD = 'admin'
PANEL_GROUP = 'live'
ADD_PANEL = 'searchlight_forward_dashboard.panels.AdminLiveVolumes'
