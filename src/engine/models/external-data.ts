/**
 * Streams a model's weights into an ONNX external data file (`model.onnx_data`) as they are made,
 * so a UNet of several GB is never held in memory and its `model.onnx` stays a small graph proto
 * (protobuf cannot encode a message past 2 GB).
 *
 * Layout as `onnx.external_data_helper` writes it: raw little-endian tensor bytes, each tensor at
 * an offset aligned to {@link EXTERNAL_DATA_ALIGNMENT} (zero padding between), referenced from the
 * initializer by `location` (relative to the model file's folder), `offset` and `length`.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';

/** Tensor offsets are multiples of this (a page), so a runtime can map a tensor straight from the file. */
export const EXTERNAL_DATA_ALIGNMENT = 4096;

/** Where one tensor's bytes went, as the initializer's `externalData` entries need them. */
export interface ExternalDataEntry {
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

/** An external data file open for appending tensors; {@link close} it when the model is built. */
export class ExternalDataFile {
  /** The file name that initializers reference (relative to the model's folder). */
  readonly location: string;
  readonly #fd: number;
  #size = 0;
  #closed = false;

  /** Creates (or truncates) `path`; the model file must be written into the same folder. */
  constructor(path: string) {
    this.location = basename(path);
    this.#fd = openSync(path, 'w');
  }

  /** Bytes written so far, padding included. */
  get size(): number {
    return this.#size;
  }

  /** Appends one tensor's bytes at the next aligned offset. */
  append(bytes: Uint8Array): ExternalDataEntry {
    if (this.#closed) throw new Error(`External data file ${this.location} is already closed.`);
    const offset = Math.ceil(this.#size / EXTERNAL_DATA_ALIGNMENT) * EXTERNAL_DATA_ALIGNMENT;
    if (offset > this.#size) this.#writeAll(new Uint8Array(offset - this.#size));
    this.#writeAll(bytes);
    return { location: this.location, offset, length: bytes.byteLength };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }

  #writeAll(bytes: Uint8Array): void {
    let written = 0;
    while (written < bytes.byteLength) written += writeSync(this.#fd, bytes, written, bytes.byteLength - written);
    this.#size += bytes.byteLength;
  }
}
