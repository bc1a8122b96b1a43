#!/usr/bin/env node
// MCP client for the certgate agent tests, built on the official MCP TypeScript SDK:
// its StdioClientTransport spawns a stdio MCP server (`certgate agent stdio ...`, or
// `mcp-remote http://127.0.0.1:PORT/mcp --allow-http` in front of `certgate agent
// listen`) exactly as a desktop client (Claude Desktop, Cursor) does.
//
// Output: one JSON object per line on stdout ({"event": ...}). Exit status 0 when the
// scenario succeeded, 1 when it failed, 2 on bad usage.
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
	CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const USAGE = `usage: node agent_client.mjs --scenario NAME --command CMD [--arg A]... [options]

Scenarios:
  full      initialize (with sampling and elicitation capabilities), tools/list,
            tools/call echo, a server notification (simulated logging), a sampling
            request and an elicitation request from the server answered here, a
            streamed long-running call with progress, then close (stdin EOF)
  list      initialize and print the tool names
  loop      call echo every --interval-ms for --duration-ms; every failure is
            reported; with --pause-after N and --pause-file F, stops after N calls,
            prints {"event":"paused"} and waits until F exists, then goes on (the
            pause does not count in --duration-ms)

Options:
  --command CMD        the stdio server to spawn
  --arg A              one argument for it (repeatable, in order)
  --env K=V            an environment variable for it (repeatable)
  --stderr FILE        append the server's stderr to FILE (default: inherit)
  --duration-ms MS     loop: how long (default 10000)
  --interval-ms MS     loop: pause between calls (default 200)
  --pause-after N      loop: pause after N calls
  --pause-file F       loop: the file that ends the pause
  --timeout MS         overall time limit (default 60000)
`;

function emit(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

function usage(msg) {
	process.stderr.write(`agent_client.mjs: ${msg}\n${USAGE}`);
	process.exit(2);
}

function parseArgs(argv) {
	const o = { args: [], env: {}, durationMs: 10000, intervalMs: 200, timeout: 60000 };
	const need = (i) => {
		if (i + 1 >= argv.length)
			usage(`${argv[i]} needs a value`);
		return argv[i + 1];
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		switch (a) {
		case '--scenario': o.scenario = need(i); i++; break;
		case '--command': o.command = need(i); i++; break;
		case '--arg': o.args.push(need(i)); i++; break;
		case '--env': {
			const kv = need(i); i++;
			const eq = kv.indexOf('=');
			if (eq < 1)
				usage(`--env wants K=V, got ${kv}`);
			o.env[kv.slice(0, eq)] = kv.slice(eq + 1);
			break;
		}
		case '--stderr': o.stderr = need(i); i++; break;
		case '--duration-ms': o.durationMs = Number(need(i)); i++; break;
		case '--interval-ms': o.intervalMs = Number(need(i)); i++; break;
		case '--pause-after': o.pauseAfter = Number(need(i)); i++; break;
		case '--pause-file': o.pauseFile = need(i); i++; break;
		case '--timeout': o.timeout = Number(need(i)); i++; break;
		case '-h': case '--help': process.stdout.write(USAGE); process.exit(0); break;
		default: usage(`unknown option ${a}`);
		}
	}
	if (!o.scenario || !o.command)
		usage('--scenario and --command are required');
	return o;
}

function textOf(result) {
	return (result.content || []).filter((c) => c.type === 'text')
	    .map((c) => c.text).join('\n');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stderrDone = [];

async function connect(o, capabilities = {}) {
	const transport = new StdioClientTransport({
		command: o.command, args: o.args, env: o.env,
		stderr: o.stderr ? 'pipe' : 'inherit',
	});
	if (o.stderr) {
		const out = fs.createWriteStream(o.stderr, { flags: 'a' });
		transport.stderr.pipe(out);
		// process.exit would drop what the bridge wrote last (its "session ended"
		// after the DELETE): main waits until the file has it all.
		stderrDone.push(new Promise((r) => { out.once('finish', r); out.once('error', r); }));
	}
	const client = new Client({ name: 'certgate-agent-test', version: '0.1.0' },
	    { capabilities });
	client.onerror = (e) => {
		const message = String(e && e.message || e);
		// See the progress check in scenarioFull.
		if (/progress notification for an unknown token/.test(message))
			return;
		emit({ event: 'transport_error', message });
	};
	await client.connect(transport);
	const sv = client.getServerVersion() || {};
	emit({ event: 'initialized', server: sv.name, pid: transport.pid });
	return { client, transport };
}

async function scenarioFull(o) {
	const seen = { notifications: 0, sampling: 0, elicitation: 0 };
	const { client } = await connect(o, { sampling: {}, elicitation: {} });
	client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
		seen.notifications++;
		emit({ event: 'notification', method: n.method, level: n.params.level });
	});
	client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
		seen.sampling++;
		emit({ event: 'sampling_request', maxTokens: req.params.maxTokens });
		return { model: 'certgate-test-model', role: 'assistant',
		    content: { type: 'text', text: 'sampled by the certgate test client' } };
	});
	client.setRequestHandler(ElicitRequestSchema, async (req) => {
		seen.elicitation++;
		emit({ event: 'elicitation_request', message: req.params.message });
		return { action: 'accept', content: { name: 'Ada Lovelace', check: true } };
	});
	await client.setLoggingLevel('debug');
	const tools = (await client.listTools()).tools.map((t) => t.name);
	emit({ event: 'tools', names: tools });
	for (const t of ['echo', 'trigger-sampling-request', 'trigger-elicitation-request'])
		if (!tools.includes(t))
			throw new Error(`${t} not listed`);
	const r = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
	emit({ event: 'result', tool: 'echo', text: textOf(r) });
	if (textOf(r) !== 'Echo: hi')
		throw new Error(`unexpected echo result ${textOf(r)}`);

	await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
	const t0 = Date.now();
	while (seen.notifications === 0 && Date.now() - t0 < 20000)
		await sleep(100);
	if (seen.notifications === 0)
		throw new Error('no notifications/message from the server within 20 s');
	emit({ event: 'notification_ok' });
	await client.callTool({ name: 'toggle-simulated-logging', arguments: {} });

	const s = await client.callTool({ name: 'trigger-sampling-request',
	    arguments: { prompt: 'say hi', maxTokens: 7 } });
	emit({ event: 'result', tool: 'trigger-sampling-request', text: textOf(s) });
	if (seen.sampling !== 1 || !textOf(s).includes('sampled by the certgate test client'))
		throw new Error('the sampling request was not answered through the bridge');

	const e = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
	emit({ event: 'result', tool: 'trigger-elicitation-request', text: textOf(e) });
	if (seen.elicitation !== 1 || !textOf(e).includes('Ada Lovelace'))
		throw new Error('the elicitation request was not answered through the bridge');

	const p0 = Date.now();
	const prog = [];
	const lr = await client.callTool(
	    { name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
	    undefined, { onprogress: (p) => prog.push(Date.now() - p0), timeout: 30000 });
	const ms = Date.now() - p0;
	emit({ event: 'result', tool: 'trigger-long-running-operation', progress: prog, ms,
	    isError: !!lr.isError });
	// Four progress notifications are sent, 0.5 s apart, the last one right before the
	// result. The SDK hands notifications to their handlers on a microtask but
	// responses synchronously, so over stdio (any stdio server) a last notification
	// read in the same chunk as the response reaches the client after it: three are
	// what a streaming relay guarantees, the first of them a second before the result.
	if (prog.length < 3 || ms - prog[0] < 1000)
		throw new Error(`progress was not streamed: ${JSON.stringify(prog)} then ${ms} ms`);
	emit({ event: 'streamed' });
	await client.close();
	emit({ event: 'closed' });
}

async function scenarioList(o) {
	const { client } = await connect(o);
	const tools = (await client.listTools()).tools.map((t) => t.name);
	emit({ event: 'tools', names: tools });
	const r = await client.callTool({ name: 'echo', arguments: { message: 'via bridge' } });
	emit({ event: 'result', tool: 'echo', text: textOf(r) });
	if (textOf(r) !== 'Echo: via bridge')
		throw new Error(`unexpected echo result ${textOf(r)}`);
	await client.close();
	emit({ event: 'closed' });
}

async function scenarioLoop(o) {
	const { client } = await connect(o);
	let t0 = Date.now();
	let ok = 0, fail = 0, n = 0;
	const errors = [];
	while (Date.now() - t0 < o.durationMs) {
		if (o.pauseAfter !== undefined && n === o.pauseAfter) {
			const pausedAt = Date.now();
			emit({ event: 'paused', calls: n });
			while (!fs.existsSync(o.pauseFile))
				await sleep(100);
			t0 += Date.now() - pausedAt;    /* the pause is not part of --duration-ms */
			emit({ event: 'resumed' });
		}
		n++;
		try {
			const r = await client.callTool({ name: 'echo', arguments: { message: `n${n}` } },
			    undefined, { timeout: 30000 });
			if (textOf(r) === `Echo: n${n}`)
				ok++;
			else {
				fail++;
				errors.push(`call ${n}: ${textOf(r)}`);
			}
		} catch (e) {
			fail++;
			errors.push(`call ${n} at ${Date.now() - t0} ms: ${e && e.message || e}`);
			emit({ event: 'call_failed', n, message: String(e && e.message || e) });
		}
		await sleep(o.intervalMs);
	}
	emit({ event: 'loop', calls: n, ok, fail, errors: errors.slice(0, 20) });
	await client.close();
	if (fail > 0)
		throw new Error(`${fail} of ${n} calls failed`);
}

const SCENARIOS = { full: scenarioFull, list: scenarioList, loop: scenarioLoop };

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const run = SCENARIOS[o.scenario];
	if (!run)
		usage(`unknown scenario ${o.scenario}`);
	const timer = setTimeout(() => {
		emit({ event: 'fail', scenario: o.scenario, message: `timed out after ${o.timeout} ms` });
		process.exit(1);
	}, o.timeout);
	let code = 0;
	try {
		await run(o);
		emit({ event: 'ok', scenario: o.scenario });
	} catch (e) {
		emit({ event: 'fail', scenario: o.scenario, message: String(e && e.message || e) });
		code = 1;
	}
	clearTimeout(timer);
	await Promise.race([Promise.all(stderrDone), sleep(5000)]);
	process.exit(code);
}

await main();
