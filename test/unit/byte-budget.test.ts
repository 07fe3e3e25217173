import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../src/net/byte-budget.ts';

describe('ByteBudget', () => {
  it('grants a reservation only whole, and takes each back exactly once', () => {
    const budget = new ByteBudget(100);
    const a = budget.open();
    const b = budget.open();
    expect(a.grow(60)).toBe(true);
    expect(b.grow(50)).toBe(false); // would exceed: nothing of it is held
    expect(budget.held).toBe(60);
    expect(b.grow(40)).toBe(true);
    expect(budget.held).toBe(100);
    a.release();
    a.release();
    expect(budget.held).toBe(40);
    expect(a.grow(10)).toBe(false); // a released reservation holds nothing more
    b.release();
    expect(budget.held).toBe(0);
  });
});
