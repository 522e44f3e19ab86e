/**
 * @peculiar/x509 set up for Node (its dependency injection needs the Reflect metadata polyfill,
 * and it signs and verifies through Node's WebCrypto). Used by activities, the client and the Key
 * Vault emulator; never by workflow code.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

export { x509 };
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
