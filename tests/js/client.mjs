#!/usr/bin/env node
// MCP client for certgate end-to-end tests, built on the official MCP TypeScript SDK.
//
// Every HTTP request the SDK makes (POST messages, the GET SSE stream, the DELETE that
// ends the session) goes through undici's fetch with an undici Agent that presents the
// agent's client certificate, so the gateway sees the same identity on all of them.
//
// Output: one JSON object per line on stdout ({"event": ...}). Exit status 0 when the
// scenario succeeded, 1 when it failed, 2 on bad usage.
import fs from 'node:fs';
import { Agent, fetch as undiciFetch, Response as UndiciResponse } from 'undici';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const USAGE = `usage: node client.mjs --url URL [--cert FILE --key FILE] [--ca FILE]
       --scenario NAME [ARG] [options]

Scenarios:
  basic          initialize, tools/list, call echo {"message":"hi"}, open the GET SSE
                 stream, start simulated logging and wait for a notifications/message
                 that arrives on the GET stream, then DELETE the session
  list           print the tool names the agent sees ({"event":"tools","names":[...]})
  progress       call trigger-long-running-operation (2 s, 4 steps) and check that its
                 progress notifications arrive while it runs (SSE not buffered)
  call TOOL      call TOOL with --args JSON (default {}); prints the result or the error
                 (with --list-first, tools/list before the call)
  sampling       call trigger-sampling-request; the server's sampling/createMessage is
                 answered by this client with a fixed text, which must come back
  ping           initialize and ping
  init           initialize, print the session id and exit WITHOUT deleting the session
  hijack         initialize as --cert/--key, then send tools/list with that session id
                 as the second agent (--cert2/--key2); succeeds when the second agent is
                 refused (HTTP 4xx) and the first one can still use its session

Options:
  --args JSON       tool arguments for "call"
  --session SID     reuse this Mcp-Session-Id instead of initializing (list, call, ping)
  --cert2/--key2    second agent's certificate and key (hijack)
  --no-terminate    do not DELETE the session at the end
  --timeout MS      overall time limit (default 30000)
  --wait-ms MS      how long basic waits for the SSE notification (default 15000)
  --verbose         also print every HTTP exchange ({"event":"http",...})
`;

function emit(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
	const o = { args: '{}', timeout: 30000, waitMs: 15000, terminate: true, verbose: false,
	    rest: [] };
	const need = (i) => {
		if (i + 1 >= argv.length)
			usage(`${argv[i]} needs a value`);
		return argv[i + 1];
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		switch (a) {
		case '--url': o.url = need(i); i++; break;
		case '--list-first': o.listFirst = true; break;
		case '--cert': o.cert = need(i); i++; break;
		case '--key': o.key = need(i); i++; break;
		case '--ca': o.ca = need(i); i++; break;
		case '--cert2': o.cert2 = need(i); i++; break;
		case '--key2': o.key2 = need(i); i++; break;
		case '--scenario': o.scenario = need(i); i++; break;
		case '--args': o.args = need(i); i++; break;
		case '--session': o.session = need(i); i++; break;
		case '--timeout': o.timeout = Number(need(i)); i++; break;
		case '--wait-ms': o.waitMs = Number(need(i)); i++; break;
		case '--no-terminate': o.terminate = false; break;
		case '--verbose': o.verbose = true; break;
		case '-h': case '--help':
			process.stdout.write(USAGE);
			process.exit(0);
			break;
		default:
			if (a.startsWith('-'))
				usage(`unknown option ${a}`);
			o.rest.push(a);
		}
	}
	if (!o.url)
		usage('--url is required');
	if (!o.scenario)
		usage('--scenario is required');
	if ((o.cert && !o.key) || (!o.cert && o.key))
		usage('--cert and --key go together');
	return o;
}

function usage(msg) {
	process.stderr.write(`client.mjs: ${msg}\n${USAGE}`);
	process.exit(2);
}

function readFile(path) {
	try {
		return fs.readFileSync(path);
	} catch (e) {
		process.stderr.write(`client.mjs: cannot read ${path}: ${e.message}\n`);
		process.exit(2);
	}
}

// Everything one agent needs: a TLS dispatcher and a fetch that uses it and reports
// what it sees (HTTP statuses, the GET SSE stream and the messages arriving on it).
class AgentConn {
	constructor(opts, cert, key, label) {
		this.label = label;
		this.verbose = opts.verbose;
		this.lastStatus = 0;
		this.lastBody = '';
		this.getStreams = 0;
		this.getMessages = [];   // JSON-RPC messages seen on GET SSE streams
		this.getWaiters = [];
		const connect = {};
		if (cert) {
			connect.cert = readFile(cert);
			connect.key = readFile(key);
		}
		if (opts.ca)
			connect.ca = readFile(opts.ca);
		this.dispatcher = new Agent({ connect, keepAliveTimeout: 4000 });
		this.fetch = (url, init) => this._fetch(url, init);
	}

	async _fetch(url, init = {}) {
		const method = (init.method || 'GET').toUpperCase();
		let res;
		try {
			res = await undiciFetch(url, { ...init, dispatcher: this.dispatcher });
		} catch (e) {
			const cause = e.cause || {};
			// Our own close() aborts the GET stream: not worth a line.
			if (e.name === 'AbortError')
				throw e;
			emit({ event: 'network_error', agent: this.label, method,
			    message: e.message, code: cause.code, cause: cause.message });
			throw e;
		}
		this.lastStatus = res.status;
		const ctype = res.headers.get('content-type') || '';
		if (this.verbose)
			emit({ event: 'http', agent: this.label, method, status: res.status,
			    content_type: ctype, session: res.headers.get('mcp-session-id'),
			    hsts: res.headers.get('strict-transport-security') });
		if (!res.ok) {
			// Keep the body for the error report, and hand the SDK an equal response.
			const text = await res.text().catch(() => '');
			this.lastBody = text;
			return new UndiciResponse(text, { status: res.status,
			    statusText: res.statusText, headers: res.headers });
		}
		if (method === 'GET' && ctype.includes('text/event-stream') && res.body) {
			this.getStreams++;
			emit({ event: 'sse_open', agent: this.label, status: res.status });
			this._wakeGet();
			return new UndiciResponse(this._tapSse(res.body), { status: res.status,
			    statusText: res.statusText, headers: res.headers });
		}
		return res;
	}

	// Passes the SSE byte stream through unchanged while noting every `data:` line.
	_tapSse(body) {
		const dec = new TextDecoder();
		let buf = '';
		const self = this;
		return body.pipeThrough(new TransformStream({
			transform(chunk, ctl) {
				buf += dec.decode(chunk, { stream: true });
				let nl;
				while ((nl = buf.indexOf('\n')) >= 0) {
					const line = buf.slice(0, nl).replace(/\r$/, '');
					buf = buf.slice(nl + 1);
					if (line.startsWith('data:'))
						self._noteGetData(line.slice(5).trim());
				}
				ctl.enqueue(chunk);
			}
		}));
	}

	_noteGetData(data) {
		let msg;
		try {
			msg = JSON.parse(data);
		} catch {
			return;
		}
		this.getMessages.push(msg);
		emit({ event: 'sse_message', agent: this.label, via: 'get',
		    method: msg.method, id: msg.id });
		this._wakeGet();
	}

	_wakeGet() {
		const w = this.getWaiters;
		this.getWaiters = [];
		for (const f of w)
			f();
	}

	// Resolves when pred() holds, re-checked whenever the GET stream changes.
	async waitGet(pred, ms, what) {
		const deadline = Date.now() + ms;
		while (!pred()) {
			const left = deadline - Date.now();
			if (left <= 0)
				throw new Error(`timed out after ${ms} ms waiting for ${what}`);
			await new Promise((resolve) => {
				const t = setTimeout(resolve, Math.min(left, 250));
				this.getWaiters.push(() => { clearTimeout(t); resolve(); });
			});
		}
	}

	async close() {
		await this.dispatcher.destroy().catch(() => {});
	}
}

async function connectClient(opts, conn, sessionId) {
	const transport = new StreamableHTTPClientTransport(new URL(opts.url), {
		fetch: conn.fetch,
		sessionId,
	});
	const client = new Client({ name: 'certgate-e2e', version: '0.1.0' },
	    { capabilities: opts.sampling ? { sampling: {} } : {} });
	if (opts.sampling)
		client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
			emit({ event: 'sampling_request', agent: conn.label,
			    messages: req.params.messages.length });
			return { model: 'certgate-test', role: 'assistant',
			    content: { type: 'text', text: 'sampled by the client' } };
		});
	client.onerror = (e) => {
		const message = String(e && e.message || e);
		if (/AbortError|operation was aborted/.test(message))
			return;   // the GET stream ends when we close
		emit({ event: 'transport_error', agent: conn.label, message,
		    status: e && e.code });
	};
	client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
		emit({ event: 'notification', agent: conn.label,
		    method: n.method, level: n.params.level });
	});
	await client.connect(transport);
	if (!sessionId) {
		const sv = client.getServerVersion() || {};
		emit({ event: 'initialized', agent: conn.label, session: transport.sessionId,
		    server: sv.name, protocol: transport.protocolVersion });
	}
	return { client, transport };
}

// Turns any error thrown by the SDK into one JSON line.
function errorEvent(e, conn, what) {
	const ev = { event: 'error', what, message: String(e && e.message || e) };
	const name = e && e.constructor && e.constructor.name;
	if (name === 'StreamableHTTPError') {
		ev.kind = 'http';
		ev.status = e.code;
	} else if (name === 'McpError') {
		ev.kind = 'jsonrpc';
		ev.code = e.code;
	} else if (e instanceof TypeError && e.cause) {
		ev.kind = 'network';
		ev.cause = e.cause.code || e.cause.message;
	} else {
		ev.kind = 'other';
	}
	if (conn) {
		ev.agent = conn.label;
		if (conn.lastStatus >= 400) {
			ev.status = ev.status || conn.lastStatus;
			try {
				const body = JSON.parse(conn.lastBody);
				if (body && body.error) {
					ev.code = body.error.code;
					ev.rpc_message = body.error.message;
				}
			} catch { /* not JSON */ }
		}
	}
	return ev;
}

async function finish(opts, client, transport) {
	if (opts.terminate && transport.sessionId) {
		await transport.terminateSession();
		emit({ event: 'terminated' });
	}
	await client.close();
}

function textOf(result) {
	return (result.content || []).filter((c) => c.type === 'text')
	    .map((c) => c.text).join('\n');
}

async function scenarioBasic(opts, a) {
	const { client, transport } = await connectClient(opts, a);
	if (!transport.sessionId)
		throw new Error('no Mcp-Session-Id after initialize');
	await client.setLoggingLevel('debug');
	const tools = await client.listTools();
	const names = tools.tools.map((t) => t.name);
	emit({ event: 'tools', names });
	if (!names.includes('echo'))
		throw new Error('echo tool not listed');
	const r = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
	const text = textOf(r);
	emit({ event: 'result', tool: 'echo', isError: !!r.isError, text });
	if (r.isError || text !== 'Echo: hi')
		throw new Error(`unexpected echo result: ${text}`);

	// The SDK opens the GET stream after notifications/initialized; wait for it so the
	// logging messages are not sent before anyone listens.
	await a.waitGet(() => a.getStreams > 0, opts.waitMs, 'the GET SSE stream');
	const t = await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
	emit({ event: 'result', tool: 'toggle-simulated-logging', isError: !!t.isError });
	await a.waitGet(() => a.getMessages.some((m) => m.method === 'notifications/message'),
	    opts.waitMs, 'notifications/message on the GET SSE stream');
	emit({ event: 'sse_notification_ok', via: 'get' });
	await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
	await transport.terminateSession();
	emit({ event: 'terminated' });
	await client.close();
}

// Progress notifications of a long tool call arrive on the POST's SSE response while
// the call runs: proves the gateway streams that response instead of buffering it.
async function scenarioProgress(opts, a) {
	const { client, transport } = await connectClient(opts, a, opts.session);
	const t0 = Date.now();
	const seen = [];
	const r = await client.callTool(
	    { name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
	    undefined,
	    { onprogress: (p) => {
		seen.push(Date.now() - t0);
		emit({ event: 'progress', progress: p.progress, total: p.total,
		    ms: Date.now() - t0 });
	    }, timeout: 20000 });
	const ms = Date.now() - t0;
	emit({ event: 'result', tool: 'trigger-long-running-operation', isError: !!r.isError,
	    text: textOf(r), ms });
	await finish(opts, client, transport);
	if (seen.length < 4)
		throw new Error(`got ${seen.length} progress notifications, want 4`);
	if (ms - seen[0] < 1000)
		throw new Error(`first progress at ${seen[0]} ms, result at ${ms} ms: response was buffered`);
	emit({ event: 'streamed', first_progress_ms: seen[0], result_ms: ms });
}

async function scenarioList(opts, a) {
	const { client, transport } = await connectClient(opts, a, opts.session);
	const tools = await client.listTools();
	emit({ event: 'tools', names: tools.tools.map((t) => t.name) });
	await finish(opts, client, transport);
}

async function scenarioCall(opts, a) {
	const tool = opts.rest[0];
	if (!tool)
		usage('call needs a tool name');
	let args;
	try {
		args = JSON.parse(opts.args);
	} catch (e) {
		usage(`--args is not JSON: ${e.message}`);
	}
	const { client, transport } = await connectClient(opts, a, opts.session);
	let failed = null;
	try {
		if (opts.listFirst) {
			const tools = await client.listTools();
			emit({ event: 'tools', names: tools.tools.map((t) => t.name) });
		}
		const r = await client.callTool({ name: tool, arguments: args });
		emit({ event: 'result', tool, isError: !!r.isError, text: textOf(r),
		    content: r.content });
		if (r.isError)
			failed = new Error(`tool ${tool} returned isError`);
	} catch (e) {
		emit(errorEvent(e, a, `call ${tool}`));
		failed = e;
		failed.reported = true;
	}
	await finish(opts, client, transport).catch((e) => emit(errorEvent(e, a, 'finish')));
	if (failed)
		throw failed;
}

async function scenarioSampling(opts, a) {
	opts.sampling = true;
	const { client, transport } = await connectClient(opts, a, opts.session);
	await client.listTools();
	const r = await client.callTool({ name: 'trigger-sampling-request',
	    arguments: { prompt: 'say something', maxTokens: 10 } }, undefined, { timeout: 20000 });
	const text = textOf(r);
	emit({ event: 'result', tool: 'trigger-sampling-request', isError: !!r.isError, text });
	await finish(opts, client, transport);
	if (r.isError || !text.includes('sampled by the client'))
		throw new Error(`the sampling answer did not come back: ${text}`);
}

async function scenarioPing(opts, a) {
	const { client, transport } = await connectClient(opts, a, opts.session);
	await client.ping();
	emit({ event: 'pong' });
	await finish(opts, client, transport);
}

async function scenarioInit(opts, a) {
	const { client, transport } = await connectClient(opts, a);
	emit({ event: 'session', session: transport.sessionId });
	// Leave the session open upstream: close only our side.
	await client.close();
}

async function scenarioHijack(opts, a) {
	if (!opts.cert2 || !opts.key2)
		usage('hijack needs --cert2 and --key2');
	const b = new AgentConn(opts, opts.cert2, opts.key2, 'second');
	try {
		const { client, transport } = await connectClient(opts, a);
		const sid = transport.sessionId;
		if (!sid)
			throw new Error('no Mcp-Session-Id after initialize');
		let refused = false;
		try {
			const other = await connectClient(opts, b, sid);
			const tools = await other.client.listTools();
			emit({ event: 'hijack_allowed', names: tools.tools.map((t) => t.name) });
			await other.client.close();
		} catch (e) {
			const ev = errorEvent(e, b, 'hijack');
			emit({ ...ev, event: 'hijack_refused' });
			refused = ev.status >= 400 && ev.status < 500;
		}
		// Neither may it open the session's GET stream or DELETE the session.
		for (const method of ['GET', 'DELETE']) {
			const headers = { 'mcp-session-id': sid,
			    'mcp-protocol-version': transport.protocolVersion || '2025-06-18',
			    accept: method === 'GET' ? 'text/event-stream' : 'application/json' };
			let status = 0;
			try {
				const res = await b.fetch(opts.url, { method, headers });
				status = res.status;
				await res.body?.cancel().catch(() => {});
			} catch (e) {
				status = -1;
			}
			const ok = status >= 400 && status < 500;
			emit({ event: ok ? 'hijack_refused' : 'hijack_allowed', method, status });
			refused = refused && ok;
		}
		// The rightful owner keeps its session.
		const tools = await client.listTools();
		emit({ event: 'owner_ok', tools: tools.tools.length });
		await finish(opts, client, transport);
		if (!refused)
			throw new Error('second agent was not refused with HTTP 4xx (POST, GET and DELETE)');
	} finally {
		await b.close();
	}
}

const SCENARIOS = {
	basic: scenarioBasic,
	list: scenarioList,
	progress: scenarioProgress,
	call: scenarioCall,
	sampling: scenarioSampling,
	ping: scenarioPing,
	init: scenarioInit,
	hijack: scenarioHijack,
};

async function main() {
	const opts = parseArgs(process.argv.slice(2));
	const run = SCENARIOS[opts.scenario];
	if (!run)
		usage(`unknown scenario ${opts.scenario}`);
	const a = new AgentConn(opts, opts.cert, opts.key, 'first');
	const timer = setTimeout(() => {
		emit({ event: 'fail', scenario: opts.scenario,
		    message: `timed out after ${opts.timeout} ms` });
		process.exit(1);
	}, opts.timeout);
	let code = 0;
	try {
		await run(opts, a);
		emit({ event: 'ok', scenario: opts.scenario });
	} catch (e) {
		if (!e || !e.reported)
			emit(errorEvent(e, a, opts.scenario));
		emit({ event: 'fail', scenario: opts.scenario,
		    message: String(e && e.message || e) });
		code = 1;
	}
	clearTimeout(timer);
	await a.close();
	process.exit(code);
}

await main();
