// The Prometheus project's lezer grammar of PromQL (@prometheus-io/lezer-promql, the parser of
// Prometheus' web UI) as a peer of promfed's parser tests (tests/it/syntax.rs).
//
//   node lezer_promql.mjs DIR < expressions.jsonl
//
// DIR holds the node_modules where scripts/test-deps.sh installed tests/peers/lezer/. Reads one
// JSON string (an expression) per line and prints one JSON object per line, in order:
//   {"error": bool, "selectors": [[vFrom, vTo, from, to], ...]}
// error: the tree has an error node. selectors: every VectorSelector in document order, with
// its own span (the metric name or `{` to the end of the name or `}`) and the span it has with
// the ranges and offsets that apply to it. The grammar gives postfix operators no precedence, so
// its tree may hang a range or offset on an enclosing node (`a / x[5m]` is
// MatrixSelector(BinaryExpr(a, x)), `-x offset 5m` is OffsetExpr(UnaryExpr(x))); in PromQL they
// bind tighter than any operator, so a MatrixSelector or OffsetExpr applies to the selector
// its operand ends with. Spans are byte offsets in the expression's UTF-8 text (lezer counts
// UTF-16 code units), start inclusive, end exclusive.

import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const dir = process.argv[2];
if (!dir) {
    process.stderr.write('usage: node lezer_promql.mjs NODE_MODULES_PARENT_DIR\n');
    process.exit(2);
}
const require = createRequire(join(resolve(dir), 'package.json'));
const { parser } = require('@prometheus-io/lezer-promql');

// UTF-16 index -> UTF-8 byte offset, for every index that starts a character (and the end).
function byteOffsets(text) {
    const at = new Array(text.length + 1);
    let i = 0;
    let b = 0;
    for (const ch of text) {
        at[i] = b;
        if (ch.length === 2) at[i + 1] = b;
        i += ch.length;
        b += Buffer.byteLength(ch, 'utf8');
    }
    at[i] = b;
    return at;
}

// The end of `selector` with the ranges and offsets that apply to it: walking up, a node
// that ends where the selector (with what applies so far) ends is transparent, and a
// MatrixSelector or OffsetExpr whose operand (first child) ends there applies to it.
function extentEnd(selector) {
    let end = selector.to;
    for (let node = selector.parent; node !== null; node = node.parent) {
        const operand = node.firstChild;
        if (['MatrixSelector', 'OffsetExpr'].includes(node.name) && operand !== null && operand.to === end) {
            end = node.to;
        } else if (node.to !== end) {
            break;
        }
    }
    return end;
}

function read(text) {
    const tree = parser.parse(text);
    const bytes = byteOffsets(text);
    let error = false;
    const selectors = [];
    tree.iterate({
        enter(ref) {
            if (ref.type.isError) error = true;
            if (ref.name !== 'VectorSelector') return;
            const own = ref.node;
            selectors.push([bytes[own.from], bytes[own.to], bytes[own.from], bytes[extentEnd(own)]]);
        },
    });
    return { error, selectors };
}

const out = [];
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
    if (line === '') continue;
    out.push(JSON.stringify(read(JSON.parse(line))));
    if (out.length >= 1000) {
        process.stdout.write(out.join('\n') + '\n');
        out.length = 0;
    }
}
if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
