// Shared helpers for the interop harness scripts (tracker.mjs, seed.mjs,
// download.mjs).
//
// Conventions, shared by every script:
// - stdout carries one JSON object per line, always with an "event" key.
//   Nothing else is ever written to stdout, so a driver can parse each line.
// - stderr carries human-readable diagnostics only.
// - Exit codes: 0 success (or a clean stop on SIGTERM/SIGINT for long-running
//   services), 1 runtime error, 2 bad command line, 3 timeout,
//   128+N when a one-shot job (download) is interrupted by signal N.

import fs from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'

export const EXIT_ERROR = 1
export const EXIT_USAGE = 2
export const EXIT_TIMEOUT = 3

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }

let stdoutBroken = false
process.stdout.on('error', err => {
  // The reader went away (EPIPE): keep running silently, the stdin watch or a
  // signal will end us. Anything else is unexpected.
  stdoutBroken = true
  if (err.code !== 'EPIPE') process.stderr.write(`stdout error: ${err.message}\n`)
})

/** Write one JSON line to stdout (synchronous on Linux for pipes and files). */
export function emit (obj) {
  if (stdoutBroken) return
  try {
    process.stdout.write(JSON.stringify(obj) + '\n')
  } catch {
    stdoutBroken = true
  }
}

/** Human-readable diagnostics on stderr. */
export function log (msg) {
  process.stderr.write(`[${scriptName}] ${msg}\n`)
}

let scriptName = 'interop'
export function setScriptName (name) { scriptName = name }

/** Print a JSON error line (and a stderr line) and exit. */
export function fail (message, code = EXIT_ERROR, extra = {}) {
  emit({ event: 'error', message: String(message), code, ...extra })
  log(`error: ${message}`)
  process.exit(code)
}

/**
 * Parse the command line with node:util parseArgs (strict). `options` is a
 * parseArgs option spec; `usage` is printed for --help and on errors.
 */
export function parseCommandLine (options, usage) {
  let parsed
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: { help: { type: 'boolean', short: 'h' }, ...options },
      strict: true,
      allowPositionals: false
    })
  } catch (err) {
    process.stderr.write(usage.trim() + '\n')
    fail(err.message, EXIT_USAGE)
  }
  if (parsed.values.help) {
    process.stdout.write(usage.trim() + '\n')
    process.exit(0)
  }
  return parsed.values
}

/** Parse a non-negative integer option, failing with a usage error. */
export function intOption (values, name, { min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  const raw = values[name]
  if (raw === undefined) return undefined
  if (!/^\d+$/.test(raw)) fail(`--${name} must be an integer, got ${JSON.stringify(raw)}`, EXIT_USAGE)
  const n = Number(raw)
  if (n < min || n > max) fail(`--${name} must be between ${min} and ${max}, got ${n}`, EXIT_USAGE)
  return n
}

/** Parse a positive number of seconds (fractions allowed). */
export function secondsOption (values, name) {
  const raw = values[name]
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!Number.isFinite(n) || n <= 0) fail(`--${name} must be a positive number of seconds, got ${JSON.stringify(raw)}`, EXIT_USAGE)
  return n
}

/**
 * The webtorrent client listens on all interfaces and may contact any address
 * it is given. The project's rule: such processes only run inside a network
 * namespace whose only interface is loopback (tests/netns.sh). Refuse to run
 * elsewhere unless INTEROP_ALLOW_NETWORK=1 is set.
 */
export function requireLoopbackOnlyNetwork () {
  if (process.env.INTEROP_ALLOW_NETWORK === '1') return
  const ifaces = os.networkInterfaces()
  const others = Object.entries(ifaces)
    .filter(([, addrs]) => addrs.some(a => !a.internal))
    .map(([name]) => name)
  if (others.length > 0) {
    fail(`refusing to run with non-loopback network interfaces present (${others.join(', ')}); ` +
      'run inside a loopback-only network namespace: tests/netns.sh node ... ' +
      '(or set INTEROP_ALLOW_NETWORK=1 to override)', EXIT_USAGE)
  }
}

/**
 * Stop cleanly on SIGTERM, SIGINT and SIGHUP: run `shutdown(signal)` (may be
 * async) with a hard deadline, then exit with `exitCode(signal)`. A second
 * signal exits at once.
 */
export function onTermination (shutdown, { exitCode = () => 0, graceMs = 5000 } = {}) {
  let stopping = false
  // `reason` tells a real signal from the lifetime guards below.
  const handler = (signal, reason = 'signal') => {
    if (stopping) {
      log(`second ${signal}: exiting now`)
      process.exit(exitCode(signal))
    }
    stopping = true
    emit({ event: 'signal', signal, reason })
    const timer = setTimeout(() => {
      log(`shutdown took more than ${graceMs} ms: exiting anyway`)
      process.exit(exitCode(signal))
    }, graceMs)
    timer.unref()
    Promise.resolve()
      .then(() => shutdown(signal))
      .catch(err => log(`error during shutdown: ${err && err.message}`))
      .finally(() => process.exit(exitCode(signal)))
  }
  for (const sig of Object.keys(SIGNAL_NUMBERS)) process.on(sig, () => handler(sig))
  return handler
}

export function signalExitCode (signal) {
  return 128 + (SIGNAL_NUMBERS[signal] || 15)
}

/**
 * Lifetime guards shared by the long-running scripts:
 * - `exitWithStdin`: treat EOF on stdin as SIGTERM. A driver that spawns us
 *   with a piped stdin and then dies (a panicking Rust test) closes the pipe,
 *   so we never outlive it.
 * - `lifetimeSeconds`: treat the expiry of a hard wall-clock cap as SIGTERM.
 */
export function installLifetimeGuards ({ exitWithStdin, lifetimeSeconds }, handler) {
  if (exitWithStdin) {
    process.stdin.on('data', () => {})
    process.stdin.on('end', () => handler('SIGTERM', 'stdin-closed'))
    process.stdin.on('error', () => handler('SIGTERM', 'stdin-closed'))
    process.stdin.resume()
  }
  if (lifetimeSeconds) {
    setTimeout(() => {
      emit({ event: 'lifetime-expired', seconds: lifetimeSeconds })
      handler('SIGTERM', 'lifetime-expired')
    }, lifetimeSeconds * 1000).unref()
  }
}

/** Last-resort handlers: turn crashes into a JSON error line and exit 1. */
export function installCrashHandlers () {
  process.on('uncaughtException', err => {
    fail(`uncaught exception: ${err && err.stack ? err.stack : err}`)
  })
  process.on('unhandledRejection', err => {
    fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`)
  })
}

/** True if `p` exists and is a directory. */
export function isDirectory (p) {
  try {
    return fs.statSync(p).isDirectory()
  } catch {
    return false
  }
}

/** The versions of the real JS peers in use, for logs and reports. */
export function packageVersion (name) {
  try {
    const url = new URL(`./node_modules/${name}/package.json`, import.meta.url)
    return JSON.parse(fs.readFileSync(url, 'utf8')).version
  } catch {
    return null
  }
}
