/* STUB: HTTP/1.1 parsing on http_parser */
