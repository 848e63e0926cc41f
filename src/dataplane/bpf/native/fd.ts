// Ownership of the fds behind BpfMap, BpfProgram and BpfObject: the native handle sits behind a
// private symbol, the classes are constructed only through their factories (INTERNAL), and an fd we
// own is closed once, by close() or by the garbage collector.
import { native } from './addon.js';
import { bpfError, checkName } from './errors.js';
import type { BpfObject } from './object.js';

// fds we own are closed by close(), or by the garbage collector if the owner forgot
const fdFinalizer = new FinalizationRegistry<number>((fd) => {
  try {
    native().closeFd(fd);
  } catch {
    // nothing to report to from a finalizer
  }
});

export const HANDLE = Symbol('kbp.native.handle');
export const INTERNAL = Symbol('kbp.native.internal');

// a borrowed fd (a map or program of a BpfObject) keeps its object alive: the object's finalizer
// closes every fd of the object
export interface FdState { fd: number; owned: boolean; closed: boolean; owner?: BpfObject }

/** The handle state of a new map or program; an fd it owns is closed by the collector if close() is never called. */
export function holdFd(holder: object, desc: { fd: number; owned: boolean; owner?: BpfObject }): FdState {
  const s: FdState = { fd: desc.fd, owned: desc.owned, closed: false, ...(desc.owner ? { owner: desc.owner } : {}) };
  if (desc.owned) fdFinalizer.register(holder, desc.fd, holder);
  return s;
}

/** bpf_obj_pin of a map's or program's fd */
export function pinFd(fd: number, path: string, kind: 'map' | 'program', name: string): void {
  checkName(path, `pin path of ${kind} ${name}`);
  const ret = native().objPin(fd, path);
  if (ret < 0) throw bpfError('pin', `${name} at ${path}`, ret);
}

/** Closes a map's or program's fd once, if it is ours (an object's maps and programs close with it). */
export function closeHandle(owner: object, s: FdState): void {
  if (s.closed) return;
  s.closed = true;
  if (s.owned) {
    fdFinalizer.unregister(owner);
    native().closeFd(s.fd);
  }
}
