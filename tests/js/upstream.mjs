#!/usr/bin/env node
// Starts @modelcontextprotocol/server-everything (Streamable HTTP transport, path /mcp)
// bound to loopback only.
//
// server-everything calls `app.listen(PORT)` without a host, which binds every
// interface, and it offers no option or environment variable for the address.
// So before loading it we make net.Server#listen default to HOST (127.0.0.1 unless
// set) whenever a caller gives a port but no host. Nothing else is changed.
//
// Usage: PORT=3001 [HOST=127.0.0.1] node tests/js/upstream.mjs
import net from 'node:net';

const host = process.env.HOST || '127.0.0.1';
const origListen = net.Server.prototype.listen;

net.Server.prototype.listen = function (...args) {
	// listen(port[, backlog][, cb]) with a numeric or numeric-string port: add the host.
	const p = args[0];
	const isPort = typeof p === 'number' ||
	    (typeof p === 'string' && /^\d+$/.test(p));
	if (isPort && typeof args[1] !== 'string')
		args.splice(1, 0, host);
	return origListen.apply(this, args);
};

// SIGTERM (how tests stop us) ends the process at once; log it for the record.
process.on('SIGTERM', () => {
	console.error('upstream: SIGTERM, exiting');
	process.exit(0);
});

await import('@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js');
