//! Telegram ingress (issue 4): run, watch, approve and cancel jobs from a chat.
