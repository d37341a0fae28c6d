"""The HTTP API: an app factory (``loom.api.app``) and one router per area
(``loom.api.routes``), each mountable alone so a Lambda function loads only its own."""
