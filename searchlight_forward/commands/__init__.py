"""Console scripts (see setup.cfg)."""
import warnings

# oslo.messaging imports oslo.service, which imports eventlet only to warn that it
# is deprecated; this project never uses eventlet. Keep operators' terminals clean.
warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"oslo_(service|utils)")
