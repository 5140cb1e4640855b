"""Each client through the whole pipeline: signed webhooks in, stand-in OpenAI and Graph, real tools and SMTP."""
