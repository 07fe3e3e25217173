import { describe, expect, it } from 'vitest';
import { operationOutcome } from '../../src/fhir/outcome.ts';

describe('operationOutcome', () => {
  it('reports a success with the informational issue type, typed without casts', () => {
    expect(
      operationOutcome({ severity: 'information', code: 'informational', diagnostics: 'exchange x accepted' }),
    ).toEqual({
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'information', code: 'informational', diagnostics: 'exchange x accepted' }],
    });
  });

  it('defaults to an error issue carrying the stable error code', () => {
    expect(
      operationOutcome({ code: 'value', diagnostics: 'bad', errorCode: 'INVALID_VALUE', expression: ['x'] }),
    ).toEqual({
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: 'error',
          code: 'value',
          details: { coding: [{ system: 'urn:fhir-gateway:error-code', code: 'INVALID_VALUE' }] },
          diagnostics: 'bad',
          expression: ['x'],
        },
      ],
    });
  });
});
