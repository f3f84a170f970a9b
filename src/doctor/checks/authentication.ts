import { checkAuthenticationConfiguration } from '../../identity/doctor.ts';
import type { DoctorCheck, DoctorContext, Finding } from '../types.ts';

/**
 * AUTHENTICATION_CONFIG (or `--authentication-config`): the file compiled as at start-up, each
 * issuer's discovery, and what a sample token (`--token`, never printed) maps to — src/identity's
 * own check, reported here with the others.
 */
export async function checkAuthentication(ctx: DoctorContext): Promise<Finding[]> {
  return checkAuthenticationConfiguration(ctx.config, {
    timeoutMs: ctx.timeoutMs,
    ...(ctx.identity.authenticationConfig ? { path: ctx.identity.authenticationConfig } : {}),
    ...(ctx.identity.token ? { token: ctx.identity.token } : {}),
    ...(ctx.identity.readFile ? { readFile: ctx.identity.readFile } : {}),
  });
}

export const check: DoctorCheck = { order: 85, topic: 'authentication config', run: checkAuthentication };
