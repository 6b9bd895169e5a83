# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
PANEL = 'live_dns_recordsets'
PANEL_DASHBOARD = 'admin'
PANEL_GROUP = 'live'
ADD_PANEL = 'searchlight_forward_dashboard.panels.AdminLiveDnsRecordsets'
