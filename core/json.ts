/**
 * JSON.parse that answers undefined for text that is not JSON, for callers
 * that validate what they read with a schema next: the schema then refuses
 * it with the caller's own message.
 */
export function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
