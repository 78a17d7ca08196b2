//! Planning (issue 3): goals become reviewable plans through the rules, Anthropic and
//! OpenAI-compatible backends.
