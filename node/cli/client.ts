/**
 * The CLI's HTTP client: finds the node's URL and token in the data dir and
 * turns API errors into one-line messages.
 */
import { readApiCredentials, type ApiCredentials } from '../data-dir.ts'

export class CliError extends Error {
  override readonly name = 'CliError'
  constructor(message: string, readonly exitCode = 1) {
    super(message)
  }
}

export interface ApiClient {
  credentials: ApiCredentials
  request<T>(method: string, path: string, body?: unknown): Promise<T>
  /** Opens a server-sent event stream; yields parsed `data` of each event with its name. */
  events(path: string, signal?: AbortSignal): AsyncIterable<{ event: string; data: unknown }>
}

export async function connect(dataDir: string): Promise<ApiClient> {
  const credentials = await readApiCredentials(dataDir)
  if (credentials === undefined) throw new CliError(`no running node found: ${dataDir}/api.json is missing — start one with \`lattice start --data-dir ${dataDir}\``)
  const headers = { authorization: `Bearer ${credentials.token}` }

  const fetchOrExplain = async (url: string, init: RequestInit): Promise<Response> => {
    try {
      return await fetch(url, init)
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error
      throw new CliError(`cannot reach the node at ${credentials.url} (${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}); is \`lattice start --data-dir ${dataDir}\` running?`)
    }
  }
  const explain = async (response: Response): Promise<never> => {
    const text = await response.text()
    let message = `${response.status} ${response.statusText}`
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string } }
      if (body.error?.message !== undefined) message = `${body.error.message} (${body.error.code ?? response.status})`
    } catch {
      if (text !== '') message += `: ${text.slice(0, 200)}`
    }
    throw new CliError(message)
  }

  return {
    credentials,
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      const response = await fetchOrExplain(`${credentials.url}${path}`, {
        method,
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      if (!response.ok) return explain(response)
      return (await response.json()) as T
    },
    async *events(path: string, signal?: AbortSignal) {
      const response = await fetchOrExplain(`${credentials.url}${path}`, { headers: { ...headers, accept: 'text/event-stream' }, ...(signal !== undefined ? { signal } : {}) })
      if (!response.ok || response.body === null) return await explain(response)
      const decoder = new TextDecoder()
      let buffer = ''
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true })
        let boundary: number
        while ((boundary = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, boundary)
          buffer = buffer.slice(boundary + 2)
          let event = 'message'
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7)
            else if (line.startsWith('data: ')) data.push(line.slice(6))
          }
          if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) as unknown }
        }
      }
    },
  }
}
