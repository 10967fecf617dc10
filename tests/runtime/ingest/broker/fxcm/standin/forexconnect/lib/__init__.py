"""Stand-in for the SDK's `forexconnect.lib` (the native libraries and `fxcorepy`)."""
