/**
 * What a fake container "runs": a command compiled into a few timed steps.
 * Only the busybox test image is modelled (the same image the Docker suite
 * uses, so one acceptance suite proves both adapters); any other image is an
 * opaque service that runs until stopped, whatever its command.
 *
 * Busybox image (`…busybox…`, PATH=/bin, /www/index.html = "hello from lattice"):
 * - the executable must be one of the image's tools, as `/bin/<tool>` or a
 *   bare `<tool>`; anything else fails to start, as Docker does;
 * - no command fails to start (the imported image has no CMD);
 * - `echo a b` prints "a b" and exits 0; `true` exits 0; `false` exits 1;
 * - `sleep N` exits 0 after N seconds (fractions allowed);
 * - `httpd -f [-p [ip:]port] [-h dir]` serves until stopped (without -f it
 *   daemonizes, so the container exits 0 at once, as the real one does);
 * - `env` prints the environment; `cat`, `ls`, `busybox` exit 0 silently;
 * - `sh -c 'script'` runs statements separated by `;` or newlines: `echo …`
 *   (`>&2` sends it to stderr), `sleep N`, `exit N`, `true`, `false`, the
 *   tools above (`exec` is ignored); an unknown command prints
 *   "sh: X: not found" on stderr and sets status 127. The script's last
 *   status is the exit code. There is no quoting beyond stripping the quotes
 *   around a word.
 */
import type { LogLine } from '../core/index.ts'

export interface HttpServer {
  /** Container port httpd listens on. */
  port: number
  /** Directory it serves. */
  home: string
}

export type Step =
  | { kind: 'log'; stream: LogLine['stream']; line: string }
  | { kind: 'status'; code: number }
  | { kind: 'sleep'; ms: number }
  | { kind: 'exit'; code: number }
  /** Runs until stopped; a server answers HTTP on its port. */
  | { kind: 'serve'; server?: HttpServer }

export type Program = { ok: true; steps: Step[] } | { ok: false; reason: string }

const BUSYBOX_TOOLS = new Set(['sh', 'httpd', 'echo', 'cat', 'sleep', 'ls', 'env', 'true', 'false', 'busybox'])
const BUSYBOX_ENV: Record<string, string> = { PATH: '/bin' }
const BUSYBOX_FILES: Record<string, string> = { '/www/index.html': 'hello from lattice\n' }
/** busybox httpd serves its working directory by default; the image's is /. */
const HTTPD_DEFAULT_HOME = '/'
const HTTPD_DEFAULT_PORT = 80
/** A script longer than this is cut, so a pathological command cannot build an unbounded program. */
const SCRIPT_STATEMENTS_MAX = 256

export function isBusyboxImage(image: string): boolean {
  return /(^|\/)busybox(:|@|$)/.test(image)
}

/** The environment an image contributes before the spec's own. */
export function imageEnv(image: string): Record<string, string> {
  return isBusyboxImage(image) ? { ...BUSYBOX_ENV } : {}
}

/** A file of the image, for the fake httpd. */
export function imageFile(image: string, path: string): string | undefined {
  return isBusyboxImage(image) ? BUSYBOX_FILES[path.replace(/\/{2,}/g, '/')] : undefined
}

function toolOf(executable: string): string | undefined {
  const tool = executable.startsWith('/bin/') ? executable.slice('/bin/'.length) : executable
  return !tool.includes('/') && BUSYBOX_TOOLS.has(tool) ? tool : undefined
}

function httpdSteps(args: readonly string[]): Step[] {
  let port = HTTPD_DEFAULT_PORT
  let home = HTTPD_DEFAULT_HOME
  let foreground = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    if (arg === '-f') foreground = true
    else if (arg === '-p') port = Number.parseInt((args[++i] ?? '').split(':').pop() ?? '', 10)
    else if (arg === '-h') home = args[++i] ?? home
  }
  if (!Number.isInteger(port) || port <= 0) return [{ kind: 'log', stream: 'stderr', line: 'httpd: bad port' }, { kind: 'exit', code: 1 }]
  return foreground ? [{ kind: 'serve', server: { port, home } }] : [{ kind: 'status', code: 0 }]
}

function toolSteps(tool: string, args: readonly string[], env: Record<string, string>, stream: LogLine['stream']): Step[] {
  switch (tool) {
    case 'echo':
      return [{ kind: 'log', stream, line: args.join(' ') }, { kind: 'status', code: 0 }]
    case 'true':
      return [{ kind: 'status', code: 0 }]
    case 'false':
      return [{ kind: 'status', code: 1 }]
    case 'sleep': {
      const seconds = Number(args[0])
      if (!Number.isFinite(seconds) || seconds < 0) {
        return [{ kind: 'log', stream: 'stderr', line: `sleep: invalid number '${args[0] ?? ''}'` }, { kind: 'status', code: 1 }]
      }
      return [{ kind: 'sleep', ms: Math.round(seconds * 1000) }, { kind: 'status', code: 0 }]
    }
    case 'httpd':
      return httpdSteps(args)
    case 'env':
      return [...Object.entries(env).map(([key, value]): Step => ({ kind: 'log', stream, line: `${key}=${value}` })), { kind: 'status', code: 0 }]
    case 'sh':
      return args[0] === '-c' ? scriptSteps(args[1] ?? '', env) : [{ kind: 'status', code: 0 }]
    default:
      return [{ kind: 'status', code: 0 }]
  }
}

function unquote(word: string): string {
  return /^(['"]).*\1$/.test(word) && word.length >= 2 ? word.slice(1, -1) : word
}

function scriptSteps(script: string, env: Record<string, string>): Step[] {
  const steps: Step[] = []
  const statements = script.split(/[;\n]/).map((s) => s.trim()).filter((s) => s.length > 0).slice(0, SCRIPT_STATEMENTS_MAX)
  for (const statement of statements) {
    let words = statement.split(/\s+/)
    const toStderr = words.some((w) => w === '>&2' || w === '1>&2')
    words = words.filter((w) => w !== '>&2' && w !== '1>&2').map(unquote)
    if (words[0] === 'exec') words = words.slice(1)
    const [name = '', ...args] = words
    if (name === 'exit') {
      const code = Number.parseInt(args[0] ?? '0', 10)
      steps.push({ kind: 'exit', code: Number.isInteger(code) ? code & 0xff : 2 })
      return steps
    }
    const tool = toolOf(name)
    if (tool === undefined) {
      steps.push({ kind: 'log', stream: 'stderr', line: `sh: ${name}: not found` }, { kind: 'status', code: 127 })
      continue
    }
    steps.push(...toolSteps(tool, args, env, toStderr ? 'stderr' : 'stdout'))
  }
  return steps
}

/** Compiles a container's command; `env` is the container's full environment. */
export function compileProgram(image: string, command: readonly string[] | undefined, env: Record<string, string>): Program {
  if (!isBusyboxImage(image)) return { ok: true, steps: [{ kind: 'serve' }] }
  const [executable, ...args] = command ?? []
  if (executable === undefined) return { ok: false, reason: `image ${image} has no default command; set one` }
  const tool = toolOf(executable)
  if (tool === undefined) return { ok: false, reason: `exec: "${executable}": executable file not found in image ${image}` }
  return { ok: true, steps: toolSteps(tool, args, env, 'stdout') }
}
