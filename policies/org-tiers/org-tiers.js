// org-tiers: named orgs first, tier by tier; large or archived repositories only off-peak.
//
// A repository in tier 1 of `tiers` scores above every one in tier 2, and so on; repositories
// in no tier come last. Within a tier never-attempted repositories go before failed ones, and
// the host breaks the remaining ties by the lower repo id. Outside the off-peak hours (UTC,
// from `now`) large repositories (size_bytes above large_bytes) and archived ones are put in
// `not-now`: the host asks again next tick. See org-tiers.toml.
//
// Batches arrive column by column (`repo-batch`); `columns` asks the host for the four this
// module reads, and the others arrive empty.

import { log } from 'clonekeeper:policy/log@0.2.2';

const DEFAULTS = {
  tiers: [],
  large_bytes: 1024 ** 3,
  archived_off_peak: true,
  off_peak_start_hour: 22,
  off_peak_end_hour: 6,
};

let config = DEFAULTS;

export const lifecycle = {
  init(text) {
    try {
      config = checkConfig(parseToml(text));
    } catch (err) {
      throw `org-tiers.toml: ${err.message}`;
    }
    log('info', 'org-tiers configured', [
      ['tiers', String(config.tiers.length)],
      ['off_peak_utc', `${config.off_peak_start_hour}:00-${config.off_peak_end_hour}:00`],
    ]);
  },
};

export const rank = {
  /** The repo-batch columns `rank` reads: names, sizes, flags (archived), attempts. */
  columns() {
    return ['name', 'size-bytes', 'flags', 'attempts'];
  },

  rank(now, repos) {
    const offPeak = isOffPeak(Number(now));
    const { len, names, sizeBytes, flags, attempts } = repos;
    // One score per repository; those held back are listed by position in notNow, and their
    // scores are ignored.
    const scores = new Float64Array(len);
    const notNow = [];
    for (let i = 0; i < len; i++) {
      // size-bytes is a u64 (a BigInt), 0 when unknown: an unknown size is not large.
      const large = Number(sizeBytes[i]) > config.large_bytes;
      if (!offPeak && (large || (flags[i].archived && config.archived_off_peak))) {
        notNow.push(i);
        continue;
      }
      const neverAttempted = attempts[i] === 0 ? 1 : 0;
      scores[i] = tierRank(names[i]) * 2 + neverAttempted;
    }
    return { scores, notNow: new Uint32Array(notNow) };
  },
};

export const explain = {
  /** Why `repo` gets the answer `rank` gives it at `now`, in one sentence. */
  explainPriority(now, repo) {
    const rank = tierRank(repo.name);
    const tier = rank === 0 ? 'in no tier' : `in tier ${config.tiers.length - rank + 1}`;
    const large = repo.sizeBytes !== undefined && Number(repo.sizeBytes) > config.large_bytes;
    if (!isOffPeak(Number(now)) && (large || (repo.archived && config.archived_off_peak))) {
      return `not now: ${large ? 'large' : 'archived'}, cloned only off-peak (${config.off_peak_start_hour}:00-${config.off_peak_end_hour}:00 UTC)`;
    }
    const attempted = repo.attempts === 0 ? 'never attempted' : `failed ${repo.attempts} time(s)`;
    return `score ${rank * 2 + (repo.attempts === 0 ? 1 : 0)}: ${tier}, ${attempted}`;
  },
};

/** tiers.length for tier 1, down to 1 for the last tier; 0 for repositories in no tier. */
function tierRank(name) {
  const lower = name.toLowerCase();
  const tier = config.tiers.findIndex((entries) =>
    entries.some((entry) => lower === entry || lower.startsWith(entry + '/')));
  return tier === -1 ? 0 : config.tiers.length - tier;
}

/** Whether the UTC hour of `nowMs` lies in [start, end), wrapping past midnight. */
function isOffPeak(nowMs) {
  const hour = ((Math.floor(nowMs / 3_600_000) % 24) + 24) % 24;
  const { off_peak_start_hour: start, off_peak_end_hour: end } = config;
  return start < end ? start <= hour && hour < end : hour >= start || hour < end;
}

function checkConfig(table) {
  const config = { ...DEFAULTS };
  for (const [key, value] of Object.entries(table)) {
    if (!(key in DEFAULTS)) {
      throw new Error(`unknown key ${key} (known: ${Object.keys(DEFAULTS).join(', ')})`);
    }
    config[key] = value;
  }
  const { tiers, large_bytes, archived_off_peak, off_peak_start_hour: start, off_peak_end_hour: end } = config;
  if (!Array.isArray(tiers) || !tiers.every((t) => Array.isArray(t) && t.every((e) => typeof e === 'string'))) {
    throw new Error('tiers: expected a list of lists of names, e.g. [["github.com/acme"], ["github.com/other"]]');
  }
  config.tiers = tiers.map((t) => t.map((e) => e.replace(/\/+$/, '').toLowerCase()));
  if (!Number.isInteger(large_bytes) || large_bytes < 0) throw new Error('large_bytes: expected a whole number of bytes');
  if (typeof archived_off_peak !== 'boolean') throw new Error('archived_off_peak: expected true or false');
  for (const [key, hour] of [['off_peak_start_hour', start], ['off_peak_end_hour', end]]) {
    if (!Number.isInteger(hour) || hour < 0 || hour > 23) throw new Error(`${key}: expected an hour from 0 to 23`);
  }
  if (start === end) throw new Error('off_peak_start_hour and off_peak_end_hour: must differ');
  return config;
}

/**
 * The part of TOML this module's config needs: comments, `[table]` headers, `key = value`
 * with strings, numbers, booleans and (nested, multi-line) arrays. No inline tables or dates.
 */
function parseToml(text) {
  const root = {};
  let table = root;
  let pos = 0;
  const fail = (msg) => {
    throw new Error(`line ${text.slice(0, pos).split('\n').length}: ${msg}`);
  };
  const match = (re) => {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (m) pos = re.lastIndex;
    return m?.[0];
  };
  const skip = (newlines) => match(newlines ? /(?:[ \t\r\n]|#[^\n]*)*/y : /(?:[ \t\r]|#[^\n]*)*/y);
  const key = () => {
    const k = match(/[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"/y) ?? fail('expected a key');
    return k.startsWith('"') ? JSON.parse(k) : k;
  };
  const dottedKey = () => {
    const path = [key()];
    while (skip(false), match(/\./y)) skip(false), path.push(key());
    return path;
  };
  const tableAt = (path) =>
    path.reduce((t, k) => {
      t[k] ??= {};
      if (typeof t[k] !== 'object' || Array.isArray(t[k])) fail(`${k} is not a table`);
      return t[k];
    }, root);
  const value = () => {
    if (match(/\[/y)) {
      const items = [];
      while (skip(true), !match(/\]/y)) {
        items.push(value());
        skip(true);
        if (!match(/,/y) && text[pos] !== ']') fail('expected , or ] in an array');
      }
      return items;
    }
    const v =
      match(/"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|true|false|[+-]?[0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?/y) ??
      fail('expected a string, number, boolean or array');
    if (v.startsWith('"')) return JSON.parse(v);
    if (v.startsWith("'")) return v.slice(1, -1);
    if (v === 'true' || v === 'false') return v === 'true';
    return Number(v.replaceAll('_', ''));
  };
  while (skip(true), pos < text.length) {
    if (match(/\[/y)) {
      skip(false);
      table = tableAt(dottedKey());
      skip(false);
      match(/\]/y) ?? fail('expected ]');
    } else {
      const path = dottedKey();
      skip(false);
      match(/=/y) ?? fail('expected =');
      skip(false);
      const last = path.pop();
      const target = path.reduce((t, k) => (typeof (t[k] ??= {}) === 'object' ? t[k] : fail(`${k} is not a table`)), table);
      if (last in target) fail(`${last} given twice`);
      target[last] = value();
    }
    skip(false);
    if (pos < text.length && text[pos] !== '\n') fail('expected the end of the line');
  }
  return root;
}
