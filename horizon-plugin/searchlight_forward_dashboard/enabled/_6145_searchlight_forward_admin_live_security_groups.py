# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
PANEL = 'live_security_groups'
PANEL_DASHBOARD = 'admin'
PANEL_GROUP = 'live'
ADD_PANEL = 'searchlight_forward_dashboard.panels.AdminLiveSecurityGroups'
