import * as A from '@automerge/automerge'
import { describe, expect, it } from 'vitest'
import { createHandle, forkHandle, generateSyncMessage, receiveHeldSyncMessage, receiveSyncMessage, type DocHandle } from './doc-handle.ts'

function write(handle: DocHandle, count: number, prefix: string): void {
  for (let i = 0; i < count; i++) {
    handle.put('_root', `${prefix}${i}`, `${prefix}-${'v'.repeat(i)}`)
    handle.commit()
  }
}

interface Side {
  doc: DocHandle
  state: A.SyncState
}

/**
 * Runs a sync session from `from` to `to`; at each message that carries
 * changes, checks that receiving it on a document already holding them
 * (receiveHeldSyncMessage) leaves the sync state receiving it whole would.
 * Answers how many messages were checked.
 */
function syncChecking(from: Side, to: Side): number {
  let checked = 0
  for (let round = 0; round < 12; round++) {
    let idle = true
    for (const [sender, receiver] of [
      [from, to],
      [to, from],
    ] as const) {
      const [state, message] = generateSyncMessage(sender.doc, sender.state)
      sender.state = state
      if (message === null) continue
      idle = false
      const decoded = A.decodeSyncMessage(message)
      if (decoded.changes.length > 0) {
        const held = forkHandle(receiver.doc, 'ee'.repeat(16))
        held.loadIncremental(Buffer.concat(decoded.changes))
        if (held.getMissingDeps(decoded.heads).length === 0) {
          const whole = receiveSyncMessage(forkHandle(receiver.doc, 'ff'.repeat(16)), receiver.state, message)
          const onHeld = receiveSyncMessage(forkHandle(held, 'ff'.repeat(16)), receiver.state, message)
          const heldOnly = receiveHeldSyncMessage(forkHandle(held, 'ff'.repeat(16)), receiver.state, decoded)
          expect(heldOnly).toEqual(whole)
          expect(heldOnly).toEqual(onHeld)
          checked++
        }
      }
      receiver.state = receiveSyncMessage(receiver.doc, receiver.state, message)
    }
    if (idle) break
  }
  expect(from.doc.getHeads().sort()).toEqual(to.doc.getHeads().sort())
  return checked
}

describe('receiving a sync message whose changes are held', () => {
  it('leaves the sync state receiving it whole leaves: whole documents, backlogs, both sides writing', () => {
    // A peer with nothing is sent the whole document.
    const full = createHandle('aa'.repeat(16))
    write(full, 30, 'a')
    let checked = syncChecking({ doc: full, state: A.initSyncState() }, { doc: createHandle('bb'.repeat(16)), state: A.initSyncState() })

    // A shared past, then each side writes: each is sent the other's backlog.
    const left = createHandle('aa'.repeat(16))
    write(left, 10, 'a')
    const right = forkHandle(left, 'bb'.repeat(16))
    write(left, 25, 'l')
    write(right, 3, 'r')
    checked += syncChecking({ doc: left, state: A.initSyncState() }, { doc: right, state: A.initSyncState() })

    // Sync states kept from an earlier session, then a few more changes on one side.
    const leftSide = { doc: left, state: A.initSyncState() }
    const rightSide = { doc: right, state: A.initSyncState() }
    syncChecking(leftSide, rightSide)
    write(left, 4, 'm')
    checked += syncChecking(leftSide, rightSide)
    expect(checked).toBeGreaterThanOrEqual(4)
  })

  it('keeps lastSentHeads, which receiving the message without its changes would move', () => {
    const sender = createHandle('aa'.repeat(16))
    write(sender, 5, 'a')
    const receiver = createHandle('bb'.repeat(16))
    let receiverState = A.initSyncState()
    let senderState = A.initSyncState()
    let message: Uint8Array | null
    ;[receiverState, message] = generateSyncMessage(receiver, receiverState)
    senderState = receiveSyncMessage(sender, senderState, message!)
    ;[senderState, message] = generateSyncMessage(sender, senderState)
    const decoded = A.decodeSyncMessage(message!)
    expect(decoded.changes.length).toBeGreaterThan(0)
    // The receiver already holds exactly the sender's document: its heads equal the message's.
    const held = forkHandle(sender, 'bb'.repeat(16))
    const naive = receiveSyncMessage(forkHandle(held, 'cc'.repeat(16)), receiverState, A.encodeSyncMessage({ ...decoded, changes: [] }))
    expect(naive.lastSentHeads).toEqual(decoded.heads)
    const kept = receiveHeldSyncMessage(forkHandle(held, 'cc'.repeat(16)), receiverState, decoded)
    expect(kept.lastSentHeads).toEqual(receiverState.lastSentHeads)
    expect(kept).toEqual(receiveSyncMessage(forkHandle(held, 'cc'.repeat(16)), receiverState, message!))
  })
})
