import { describe, expect, it } from 'vitest'
import { demuxLogLines, LOG_LINE_CHARS_MAX } from './docker-logs.ts'

function frame(stream: 1 | 2, text: string | Buffer): Buffer {
  const payload = typeof text === 'string' ? Buffer.from(text) : text
  const header = Buffer.alloc(8)
  header[0] = stream
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

async function lines(chunks: Buffer[]): Promise<string[]> {
  const out: string[] = []
  for await (const line of demuxLogLines(chunks)) out.push(`${line.stream}:${line.line}`)
  return out
}

describe('demuxLogLines', () => {
  it('frames split anywhere across chunks still give whole lines per stream', async () => {
    const bytes = Buffer.concat([frame(1, 'one\ntw'), frame(2, 'err\n'), frame(1, 'o\n')])
    const expected = ['stdout:one', 'stderr:err', 'stdout:two']
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(await lines([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(expected)
    }
  })

  it('a multi-byte character split between frames is decoded whole', async () => {
    const text = Buffer.from('héllo\n')
    expect(await lines([frame(1, text.subarray(0, 2)), frame(1, text.subarray(2))])).toEqual(['stdout:héllo'])
  })

  it('a last line without newline is kept and CRLF endings are trimmed', async () => {
    expect(await lines([frame(1, 'a\r\nb')])).toEqual(['stdout:a', 'stdout:b'])
  })

  it('output without frame headers (a TTY container) passes through as stdout', async () => {
    expect(await lines([Buffer.from('plain text\nmore\n')])).toEqual(['stdout:plain text', 'stdout:more'])
  })

  it('a line longer than the bound is cut into pieces', async () => {
    const long = 'x'.repeat(LOG_LINE_CHARS_MAX + 10)
    const out = await lines([frame(1, `${long}\n`)])
    expect(out.map((l) => l.length - 'stdout:'.length)).toEqual([LOG_LINE_CHARS_MAX, 10])
  })

  it('an empty log gives no lines', async () => {
    expect(await lines([Buffer.alloc(0)])).toEqual([])
  })
})
