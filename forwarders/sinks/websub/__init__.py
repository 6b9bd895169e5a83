"""The WebSub sink: content distribution of Atom entries to WebSub subscribers."""
