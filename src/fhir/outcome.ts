import type { OperationOutcome } from 'fhir/r4.js';
import type { IssueType } from '../errors.ts';

/** FHIR issue types: an error's (src/errors.ts), or `informational` for an outcome that reports success. */
export type OutcomeIssueType = IssueType | 'informational';

export interface OutcomeIssue {
  severity?: 'fatal' | 'error' | 'warning' | 'information';
  code: OutcomeIssueType;
  diagnostics: string;
  expression?: string[];
  /** Our stable error code, carried in issue.details.coding for machines. */
  errorCode?: string;
}

export const ERROR_CODE_SYSTEM = 'urn:fhir-gateway:error-code';

export function operationOutcome(...issues: OutcomeIssue[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((i) => ({
      severity: i.severity ?? 'error',
      code: i.code,
      ...(i.errorCode ? { details: { coding: [{ system: ERROR_CODE_SYSTEM, code: i.errorCode }] } } : {}),
      diagnostics: i.diagnostics,
      ...(i.expression?.length ? { expression: i.expression } : {}),
    })),
  };
}
