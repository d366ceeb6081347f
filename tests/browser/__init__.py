"""End-to-end tests with openvidu-browser in Chromium (see README.md here)."""
