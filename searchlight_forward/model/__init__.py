"""The pure core model: notifications, document changes, versions, stored role
copies and the envelope every way out carries. No I/O."""
