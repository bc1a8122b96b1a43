#!/usr/bin/env node
// A stdio MCP server on the official SDK whose one tool forbids extra properties
// (zod .strict() -> "additionalProperties": false in its inputSchema): the real
// servers under test (server-everything, server-filesystem) forbid none.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'certgate-strict', version: '0.1.0' });
server.registerTool('strict-echo', {
	description: 'Echoes message; no other argument is allowed',
	inputSchema: z.object({ message: z.string() }).strict(),
}, async ({ message }) => ({ content: [{ type: 'text', text: `Echo: ${message}` }] }));
await server.connect(new StdioServerTransport());
