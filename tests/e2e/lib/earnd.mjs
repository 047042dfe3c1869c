// Starts the real earnd on ephemeral loopback ports with a fresh data directory, and talks to
// its admin and public APIs over HTTP the way a merchant's scripts do.

import {spawn} from 'node:child_process';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import http from 'node:http';

export const ADMIN_KEY = 'e2e-admin-key-0123456789abcdef';

// A browser user agent (headless Chromium's own is classified as a bot, by design); version
// varies so that each seeded visitor hashes differently.
export function browserUa(n) {
  return `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${120 + (n % 20)}.0.${n}.0 Safari/537.36`;
}

const agent = new http.Agent({keepAlive: true, maxSockets: 32});

// One HTTP request; resolves {status, headers, body} (body as text) whatever the status.
export function request(url, {method = 'GET', headers = {}, body} = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {method, headers, agent}, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8')}));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

export class Earnd {
  // binDir holds earnd; configToml is the text of its config file; prepare(dataDir) may fill
  // the data directory before earnd opens it. Resolves once earnd has printed its listening
  // line.
  static async start(binDir, configToml = '', prepare = async () => {}) {
    const e = new Earnd();
    e.dataDir = mkdtempSync(join(tmpdir(), 'earnd-e2e-'));
    e.log = '';
    await prepare(join(e.dataDir, 'data'));
    const config = join(e.dataDir, 'earnd.toml');
    writeFileSync(config, configToml);
    e.proc = spawn(join(binDir, 'earnd'), [
      '--config', config,
      '--data-dir', join(e.dataDir, 'data'),
      '--public-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
      '--durability', 'async',
    ], {
      env: {...process.env, EARND_ADMIN_KEY: ADMIN_KEY, EARND_WEBHOOKS_ALLOW_PRIVATE: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    e.exited = new Promise((resolve) => e.proc.on('exit', (code, signal) => resolve({code, signal})));
    await new Promise((resolve, reject) => {
      const onData = (chunk) => {
        e.log += chunk;
        const m = /event=listening public=(\S+) admin=(\S+)/.exec(e.log);
        if (m) {
          e.publicOrigin = `http://${m[1]}`;
          e.adminOrigin = `http://${m[2]}`;
          resolve();
        }
      };
      e.proc.stdout.on('data', onData);
      e.proc.stderr.on('data', onData);
      e.exited.then(({code}) => reject(new Error(`earnd exited (${code}) before listening:\n${e.log}`)));
      setTimeout(() => reject(new Error(`earnd did not listen within 15 s:\n${e.log}`)), 15000);
    });
    return e;
  }

  // SIGTERM, then the exit status; removes the data directory.
  async stop() {
    this.proc.kill('SIGTERM');
    const status = await this.exited;
    agent.destroy();
    rmSync(this.dataDir, {recursive: true, force: true});
    return status;
  }

  async admin(method, path, body) {
    const r = await request(this.adminOrigin + path, {
      method, body,
      headers: {Authorization: `Bearer ${ADMIN_KEY}`,
        ...(body !== undefined ? {'Content-Type': 'application/json'} : {})},
    });
    return r;
  }

  // An admin call that must succeed; resolves its JSON (or text for CSV).
  async adminOk(method, path, body) {
    const r = await this.admin(method, path, body);
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
    return (r.headers['content-type'] || '').includes('json') ? JSON.parse(r.body) : r.body;
  }

  // A visitor's click on /r/{code}; resolves the click id from the redirect.
  async click(code, ua) {
    const r = await request(`${this.publicOrigin}/r/${code}`, {headers: {'User-Agent': ua}});
    if (r.status !== 302) throw new Error(`click on ${code}: ${r.status}`);
    return new URL(r.headers.location).searchParams.get('earnd_cid');
  }

  async conversion(programKey, body) {
    const r = await request(`${this.publicOrigin}/v1/conversions`, {
      method: 'POST', body,
      headers: {Authorization: `Bearer ${programKey}`, 'Content-Type': 'application/json'},
    });
    if (r.status !== 201) throw new Error(`conversion ${body.event_id}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }
}
