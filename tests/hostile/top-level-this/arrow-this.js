// expect: refused no-this
(ctx) => String(this)
