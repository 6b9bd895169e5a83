# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
PANEL = 'live_images'
PANEL_DASHBOARD = 'admin'
PANEL_GROUP = 'live'
ADD_PANEL = 'searchlight_forward_dashboard.panels.AdminLiveImages'
