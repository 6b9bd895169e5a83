# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
from django.utils.translation import gettext_lazy as _

PANEL_GROUP = 'live'
PANEL_GROUP_NAME = _('Live')
PANEL_GROUP_DASHBOARD = 'admin'
