# searchlight-forward (docs/horizon.md): copy into openstack_dashboard/local/enabled/.
from django.utils.translation import gettext_lazy as _

PANEL_GROUP = 'live'
PANEL_GROUP_NAME = _('Live')
PANEL_GROUP_DASHBOARD = 'project'

ADD_INSTALLED_APPS = ['searchlight_forward_dashboard']
ADD_JS_FILES = ['searchlight_forward_dashboard/livetable.js']
ADD_SCSS_FILES = ['searchlight_forward_dashboard/livetable.scss']
AUTO_DISCOVER_STATIC_FILES = False
