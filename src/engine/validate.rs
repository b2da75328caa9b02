//! Static checks on merchant block code, and extraction of the block's single function.
//!
//! The editor calls [`validate_block`] when a merchant saves a block so mistakes show up with
//! a line and column instead of as a broken page. The engine runs the same analysis when it
//! compiles a block ([`analyse_block`]): the parse it needs to find the function's name,
//! parameters and source span is the parse that validation needs anyway.
//!
//! Validation is a guard rail, not the sandbox: the isolate itself refuses code generation from
//! strings and exposes no host objects, so code that slips past these rules (say, a
//! `.constructor` reached through an obfuscated computed key) still cannot escape.
//!
//! The rules and their unit tests (the last hundred lines) stay together.

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    ArrowFunctionExpression, AssignmentTargetPropertyIdentifier, AssignmentTargetPropertyProperty, BinaryExpression, BinaryOperator,
    BindingPattern, BindingProperty, Class, ComputedMemberExpression, Expression, FormalParameters, IdentifierReference, ImportExpression,
    ImportMeta, MethodDefinition, MethodDefinitionKind, ModuleDeclaration, ObjectProperty, PropertyDefinition, PropertyKey, Statement,
    StaticMemberExpression, StringLiteral, TemplateLiteral, ThisExpression, WithStatement,
};
use oxc_ast_visit::{walk, Visit};
use oxc_parser::Parser;
use oxc_span::{GetSpan, SourceType, Span};
use oxc_syntax::scope::ScopeFlags;
use serde::Serialize;

/// One finding, positioned at the offending construct.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// Stable rule id, e.g. `no-eval`; the editor keys help texts on it.
    pub rule: &'static str,
    pub message: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters (not bytes).
    pub column: u32,
}

/// Result of [`validate_block`]. Code with any `errors` is refused; `warnings` are advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockValidation {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl BlockValidation {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors in one line, for a `BlockFailure::Error`.
    pub fn error_summary(&self) -> String {
        self.errors.iter().map(|d| format!("{} at {}:{}: {}", d.rule, d.line, d.column, d.message)).collect::<Vec<_>>().join("; ")
    }
}

/// What a block argument is bound to when the engine calls the block by parameter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockArg {
    Storefront,
    Products,
    Helpers,
    Ctx,
    Config,
    Cart,
}

impl BlockArg {
    /// Parameter names the engine understands (see actors/README.md).
    pub fn from_param_name(name: &str) -> Option<Self> {
        Some(match name {
            "storefront" | "store" | "shop" => BlockArg::Storefront,
            "products" | "items" | "catalog" => BlockArg::Products,
            "helpers" | "h" | "helper" => BlockArg::Helpers,
            "ctx" | "context" => BlockArg::Ctx,
            "config" | "settings" => BlockArg::Config,
            "cart" => BlockArg::Cart,
            _ => return None,
        })
    }

    /// Name used by `dispatch.js` to pick the value.
    pub fn js_name(self) -> &'static str {
        match self {
            BlockArg::Storefront => "storefront",
            BlockArg::Products => "products",
            BlockArg::Helpers => "helpers",
            BlockArg::Ctx => "ctx",
            BlockArg::Config => "config",
            BlockArg::Cart => "cart",
        }
    }
}

/// The one function a block defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFunction {
    /// Declared or binding name (`function renderHero`, `const renderHero = ...`), if any.
    pub name: Option<String>,
    /// One entry per parameter: `Some(name)` for a plain identifier without default value,
    /// `None` for destructuring patterns or defaults.
    pub params: Vec<Option<String>>,
    /// Whether the function has a `...rest` parameter.
    pub has_rest: bool,
    /// Byte range of the function itself (declaration or expression) in the source; wrapping
    /// `source[span]` in parentheses yields an expression evaluating to the function.
    pub span: std::ops::Range<usize>,
}

impl BlockFunction {
    /// The by-name argument binding, or `None` to call positionally with
    /// `(storefront, products, helpers, ctx)`.
    ///
    /// By-name binding applies only when every parameter is a plain identifier with a known
    /// name, so `function renderHero(storefront, helpers)` receives the helpers as its second
    /// argument while `function (a, b, c, d)` stays positional.
    pub fn argument_binding(&self) -> Option<Vec<BlockArg>> {
        if self.params.is_empty() || self.has_rest {
            return None;
        }
        self.params.iter().map(|p| p.as_deref().and_then(BlockArg::from_param_name)).collect()
    }
}

/// Validates block code for the editor. See the module docs for the rules.
pub fn validate_block(code: &str) -> BlockValidation {
    analyse_block(code).0
}

/// Validates and, when there are no errors, extracts the block function.
pub fn analyse_block(code: &str) -> (BlockValidation, Option<BlockFunction>) {
    analyse(code, true)
}

/// Extracts the block function without applying the forbidden-construct rules.
///
/// For trusted code (the default library) and for tests that must prove the isolate itself
/// refuses what validation would have caught. Syntax and single-function errors still apply.
pub fn extract_block_function(code: &str) -> Result<BlockFunction, BlockValidation> {
    match analyse(code, false) {
        (_, Some(function)) => Ok(function),
        (validation, None) => Err(validation),
    }
}

fn analyse(code: &str, apply_rules: bool) -> (BlockValidation, Option<BlockFunction>) {
    let allocator = Allocator::default();
    let positions = LineIndex::new(code);
    let parsed = Parser::new(&allocator, code, SourceType::unambiguous()).parse();
    let mut validation = BlockValidation::default();

    if parsed.panicked || parsed.diagnostics.has_errors() {
        for diagnostic in parsed.diagnostics.errors() {
            let offset = diagnostic.labels.first().map_or(0, |label| label.offset());
            validation.errors.push(positions.diagnostic("syntax", diagnostic.message.to_string(), offset));
        }
        if validation.errors.is_empty() {
            validation.errors.push(positions.diagnostic("syntax", "could not parse the code".into(), 0));
        }
        return (validation, None);
    }

    if apply_rules {
        let mut rules = RuleVisitor { positions: &positions, errors: Vec::new(), scopes: Vec::new() };
        rules.visit_program(&parsed.program);
        // One finding per rule and position (a literal key is both a key and a literal).
        rules.errors.sort_by_key(|d| (d.line, d.column));
        rules.errors.dedup_by(|a, b| a.rule == b.rule && a.line == b.line && a.column == b.column);
        validation.errors.extend(rules.errors);
    }

    let function = match extract_function(&parsed.program.body) {
        Ok(function) => Some(function),
        Err((message, span)) => {
            validation.errors.push(positions.diagnostic("single-function", message.into(), span.start));
            None
        }
    };

    if let Some(function) = &function {
        let known = function.params.iter().filter(|p| p.as_deref().and_then(BlockArg::from_param_name).is_some()).count();
        if known > 0 && known < function.params.len() {
            validation.warnings.push(
                positions.diagnostic(
                    "positional-arguments",
                    "some parameter names are not recognised, so the block is called with \
                 (storefront, products, helpers, ctx) in that order"
                        .into(),
                    u32::try_from(function.span.start).unwrap_or(0),
                ),
            );
        }
    }

    if validation.errors.is_empty() {
        (validation, function)
    } else {
        (validation, None)
    }
}

/// Finds the one top-level function: `function f() {}`, `const f = function () {}`,
/// `const f = () => ...`, or a bare function/arrow expression statement.
fn extract_function(body: &[Statement<'_>]) -> Result<BlockFunction, (&'static str, Span)> {
    let mut found: Vec<(BlockFunction, Span)> = Vec::new();
    for statement in body {
        let function = match statement {
            Statement::FunctionDeclaration(function) => Some(BlockFunction {
                name: function.id.as_ref().map(|id| id.name.to_string()),
                params: param_names(&function.params),
                has_rest: function.params.rest.is_some(),
                span: span_range(function.span),
            }),
            Statement::VariableDeclaration(declaration) if declaration.declarations.len() == 1 => {
                let declarator = &declaration.declarations[0];
                let name = match &declarator.id {
                    BindingPattern::BindingIdentifier(id) => Some(id.name.to_string()),
                    _ => None,
                };
                declarator.init.as_ref().and_then(function_expression).map(|f| BlockFunction { name, ..f })
            }
            Statement::ExpressionStatement(expression) => function_expression(&expression.expression),
            Statement::EmptyStatement(_) => continue,
            _ => None,
        };
        match function {
            Some(function) => found.push((function, statement.span())),
            None => return Err(("a block may only contain its one function; move other code inside it", statement.span())),
        }
    }
    match found.len() {
        0 => Err(("a block must define one function", Span::new(0, 0))),
        1 => Ok(found.remove(0).0),
        _ => Err(("a block must define exactly one function", found[1].1)),
    }
}

fn function_expression(expression: &Expression<'_>) -> Option<BlockFunction> {
    match expression {
        Expression::FunctionExpression(function) => Some(BlockFunction {
            name: function.id.as_ref().map(|id| id.name.to_string()),
            params: param_names(&function.params),
            has_rest: function.params.rest.is_some(),
            span: span_range(function.span),
        }),
        Expression::ArrowFunctionExpression(arrow) => Some(arrow_function(arrow)),
        Expression::ParenthesizedExpression(inner) => function_expression(&inner.expression),
        _ => None,
    }
}

fn arrow_function(arrow: &ArrowFunctionExpression<'_>) -> BlockFunction {
    BlockFunction { name: None, params: param_names(&arrow.params), has_rest: arrow.params.rest.is_some(), span: span_range(arrow.span) }
}

fn param_names(params: &FormalParameters<'_>) -> Vec<Option<String>> {
    params
        .items
        .iter()
        .map(|param| match (&param.pattern, &param.initializer) {
            (BindingPattern::BindingIdentifier(id), None) => Some(id.name.to_string()),
            _ => None,
        })
        .collect()
}

fn span_range(span: Span) -> std::ops::Range<usize> {
    span.start as usize..span.end as usize
}

/// Globals that reach code generation, machine code, shared memory or the global object:
/// refused wherever the name appears, a local of the same name included (shadowing one would
/// hide a real use elsewhere in the block). Host APIs (`fetch`, timers, `window`, `process`, …)
/// do not exist in the isolate at all: using one fails at run time with a `ReferenceError`.
const FORBIDDEN_GLOBALS: &[(&str, &str, &str)] = &[
    ("eval", "no-eval", "`eval` is not allowed"),
    ("Function", "no-function-constructor", "the `Function` constructor is not allowed"),
    ("WebAssembly", "no-wasm", "`WebAssembly` is not available in blocks"),
    ("Atomics", "no-atomics", "`Atomics` is not available in blocks"),
    ("SharedArrayBuffer", "no-atomics", "`SharedArrayBuffer` is not available in blocks"),
    ("Reflect", "no-reflect", "`Reflect` is not allowed (it reaches prototypes and constructors)"),
    ("globalThis", "no-globalthis", "`globalThis` is not allowed"),
    ("require", "no-import", "`require` is not available in blocks"),
];

/// Property names refused however they are reached: `a.name`, `a['name']`, `a['na' + 'me']`,
/// `{name} = a`, or the name as a string constant anywhere (`Reflect.get(a, 'name')`).
const FORBIDDEN_PROPERTIES: &[(&str, &str, &str)] = &[
    (
        "constructor",
        "no-constructor-chain",
        "`constructor` reaches the Function constructor through a function's constructor chain and is not allowed",
    ),
    ("__proto__", "no-proto", "`__proto__` is not allowed"),
    ("setPrototypeOf", "no-proto", "changing prototypes is not allowed"),
    ("getPrototypeOf", "no-proto", "`getPrototypeOf` reaches built-in prototypes and constructors and is not allowed"),
    ("__defineGetter__", "no-proto", "legacy accessor methods are not allowed"),
    ("__defineSetter__", "no-proto", "legacy accessor methods are not allowed"),
    ("__lookupGetter__", "no-proto", "legacy accessor methods are not allowed"),
    ("__lookupSetter__", "no-proto", "legacy accessor methods are not allowed"),
    ("getOwnPropertyDescriptor", "no-reflect", "property descriptors reach built-in accessors and constructors and are not allowed"),
    ("getOwnPropertyDescriptors", "no-reflect", "property descriptors reach built-in accessors and constructors and are not allowed"),
    ("callee", "no-callee", "`arguments.callee` is not allowed"),
    ("caller", "no-callee", "`caller` is not allowed"),
    ("prepareStackTrace", "no-host-objects", "V8's stack trace hooks are not available in blocks"),
];

fn forbidden_property(name: &str) -> Option<(&'static str, &'static str)> {
    FORBIDDEN_PROPERTIES.iter().find(|(n, _, _)| *n == name).map(|(_, rule, message)| (*rule, *message))
}

/// Walks the whole program and records forbidden constructs.
struct RuleVisitor<'p> {
    positions: &'p LineIndex<'p>,
    errors: Vec<Diagnostic>,
    /// The scopes the walk is in, innermost last.
    scopes: Vec<ScopeFlags>,
}

impl RuleVisitor<'_> {
    fn error(&mut self, rule: &'static str, message: &str, span: Span) {
        self.errors.push(self.positions.diagnostic(rule, message.to_string(), span.start));
    }

    fn check_property(&mut self, name: &str, span: Span) {
        if let Some((rule, message)) = forbidden_property(name) {
            self.error(rule, message, span);
        }
    }

    /// Whether `this` here is bound by a strict function (never the global object): the nearest
    /// enclosing non-arrow function is strict, or inside a class. The program's own directives
    /// do not count: the engine compiles the block's function alone.
    fn this_is_safe(&self) -> Option<bool> {
        let function = self.scopes.iter().rposition(|flags| {
            flags.contains(ScopeFlags::Function) && !flags.contains(ScopeFlags::Arrow)
                || flags.contains(ScopeFlags::ClassStaticBlock)
                || (flags.contains(ScopeFlags::StrictMode) && !flags.contains(ScopeFlags::Top) && !flags.intersects(ScopeFlags::Function))
        })?;
        Some(self.scopes[..=function].iter().any(|flags| flags.contains(ScopeFlags::StrictMode) && !flags.contains(ScopeFlags::Top)))
    }
}

/// The value of a string constant: a string literal, a template literal without
/// substitutions, or `+` of such constants (`'constr' + 'uctor'`).
fn constant_string(expression: &Expression<'_>) -> Option<String> {
    match expression {
        Expression::StringLiteral(literal) => Some(literal.value.to_string()),
        Expression::TemplateLiteral(template) if template.expressions.is_empty() => {
            template.quasis.first().and_then(|q| q.value.cooked.as_ref()).map(|s| s.to_string())
        }
        Expression::ParenthesizedExpression(inner) => constant_string(&inner.expression),
        Expression::BinaryExpression(binary) => constant_concatenation(binary),
        _ => None,
    }
}

fn constant_concatenation(binary: &BinaryExpression<'_>) -> Option<String> {
    if binary.operator != BinaryOperator::Addition {
        return None;
    }
    let mut left = constant_string(&binary.left)?;
    left.push_str(&constant_string(&binary.right)?);
    Some(left)
}

/// A function, arrow or class written in place: its members reach the constructor chain.
fn is_function_literal(expression: &Expression<'_>) -> bool {
    match expression {
        Expression::FunctionExpression(_) | Expression::ArrowFunctionExpression(_) | Expression::ClassExpression(_) => true,
        Expression::ParenthesizedExpression(inner) => is_function_literal(&inner.expression),
        _ => false,
    }
}

fn property_key_name(key: &PropertyKey<'_>) -> Option<String> {
    match key {
        PropertyKey::StaticIdentifier(id) => Some(id.name.to_string()),
        PropertyKey::PrivateIdentifier(_) => None,
        other => other.as_expression().and_then(constant_string),
    }
}

impl<'a> Visit<'a> for RuleVisitor<'_> {
    fn enter_scope(&mut self, flags: ScopeFlags, _scope_id: &std::cell::Cell<Option<oxc_syntax::scope::ScopeId>>) {
        self.scopes.push(flags);
    }

    fn leave_scope(&mut self) {
        self.scopes.pop();
    }

    fn visit_identifier_reference(&mut self, it: &IdentifierReference<'a>) {
        let name = it.name.as_str();
        if let Some((_, rule, message)) = FORBIDDEN_GLOBALS.iter().find(|(n, _, _)| *n == name) {
            self.error(rule, message, it.span);
        }
    }

    fn visit_this_expression(&mut self, it: &ThisExpression) {
        match self.this_is_safe() {
            None => self.error("no-this", "top-level `this` is the global object and is not allowed", it.span),
            Some(false) => self.error(
                "no-this",
                "`this` in a function that is not strict can be the global object; use it in a class, or add 'use strict'",
                it.span,
            ),
            Some(true) => {}
        }
    }

    fn visit_class(&mut self, it: &Class<'a>) {
        // The heritage expression is evaluated outside the class's (strict) scope.
        if let Some(heritage) = &it.heritage {
            self.visit_expression(&heritage.expression);
        }
        if let Some(id) = &it.id {
            self.visit_binding_identifier(id);
        }
        self.scopes.push(ScopeFlags::StrictMode);
        self.visit_class_body(&it.body);
        self.scopes.pop();
    }

    fn visit_import_expression(&mut self, it: &ImportExpression<'a>) {
        self.error("no-import", "dynamic `import()` is not available in blocks", it.span);
        walk::walk_import_expression(self, it);
    }

    fn visit_import_meta(&mut self, it: &ImportMeta) {
        self.error("no-import", "`import.meta` is not available in blocks", it.span);
    }

    fn visit_module_declaration(&mut self, it: &ModuleDeclaration<'a>) {
        self.error("no-import", "`import`/`export` are not available in blocks", it.span());
        walk::walk_module_declaration(self, it);
    }

    fn visit_with_statement(&mut self, it: &WithStatement<'a>) {
        self.error("no-with", "`with` is not allowed", it.span);
        walk::walk_with_statement(self, it);
    }

    fn visit_static_member_expression(&mut self, it: &StaticMemberExpression<'a>) {
        self.check_property(it.property.name.as_str(), it.property.span);
        walk::walk_static_member_expression(self, it);
    }

    fn visit_computed_member_expression(&mut self, it: &ComputedMemberExpression<'a>) {
        // Constant keys are checked as the expressions they are (string literal, template,
        // concatenation). A key known only at run time is left to the isolate, which refuses to
        // compile strings, except on a function written in place, whose members are its
        // constructor chain.
        let key = it.expression.without_parentheses();
        if is_function_literal(&it.object) && constant_string(key).is_none() && !matches!(key, Expression::NumericLiteral(_)) {
            self.error(
                "no-constructor-chain",
                "a computed member of a function can reach the Function constructor and is not allowed",
                key.span(),
            );
        }
        walk::walk_computed_member_expression(self, it);
    }

    fn visit_binary_expression(&mut self, it: &BinaryExpression<'a>) {
        // A string built from constants is checked as a whole (`'constr' + 'uctor'`); its parts
        // are constants too, so there is nothing else inside to check.
        match constant_concatenation(it) {
            Some(name) => self.check_property(&name, it.span),
            None => walk::walk_binary_expression(self, it),
        }
    }

    fn visit_string_literal(&mut self, it: &StringLiteral<'a>) {
        self.check_property(it.value.as_str(), it.span);
    }

    fn visit_template_literal(&mut self, it: &TemplateLiteral<'a>) {
        if it.expressions.is_empty() {
            if let Some(cooked) = it.quasis.first().and_then(|q| q.value.cooked.as_ref()) {
                self.check_property(cooked.as_str(), it.span);
            }
        }
        walk::walk_template_literal(self, it);
    }

    fn visit_object_property(&mut self, it: &ObjectProperty<'a>) {
        // Defining a property of one's own object is harmless, except `__proto__` (which sets
        // the prototype); computed keys are evaluated and checked like any expression.
        if it.computed {
            self.visit_property_key(&it.key);
        } else if property_key_name(&it.key).as_deref() == Some("__proto__") {
            self.error("no-proto", "`__proto__` is not allowed", it.key.span());
        }
        self.visit_expression(&it.value);
    }

    fn visit_method_definition(&mut self, it: &MethodDefinition<'a>) {
        if it.computed {
            self.visit_property_key(&it.key);
        }
        let flags = match it.kind {
            MethodDefinitionKind::Get => ScopeFlags::Function | ScopeFlags::GetAccessor,
            MethodDefinitionKind::Set => ScopeFlags::Function | ScopeFlags::SetAccessor,
            MethodDefinitionKind::Constructor => ScopeFlags::Function | ScopeFlags::Constructor,
            MethodDefinitionKind::Method => ScopeFlags::Function,
        };
        self.visit_function(&it.value, flags);
    }

    fn visit_property_definition(&mut self, it: &PropertyDefinition<'a>) {
        if it.computed {
            self.visit_property_key(&it.key);
        }
        if let Some(value) = &it.value {
            self.visit_expression(value);
        }
    }

    fn visit_binding_property(&mut self, it: &BindingProperty<'a>) {
        // Destructuring reads the property: `const {constructor} = f`.
        if let Some(name) = property_key_name(&it.key) {
            self.check_property(&name, it.key.span());
        }
        if it.computed {
            self.visit_property_key(&it.key);
        }
        self.visit_binding_pattern(&it.value);
    }

    fn visit_assignment_target_property_identifier(&mut self, it: &AssignmentTargetPropertyIdentifier<'a>) {
        // `({constructor} = f)`
        self.check_property(it.binding.name.as_str(), it.binding.span);
        walk::walk_assignment_target_property_identifier(self, it);
    }

    fn visit_assignment_target_property_property(&mut self, it: &AssignmentTargetPropertyProperty<'a>) {
        if let Some(name) = property_key_name(&it.name) {
            self.check_property(&name, it.name.span());
        }
        if it.computed {
            self.visit_property_key(&it.name);
        }
        self.visit_assignment_target_maybe_default(&it.binding);
    }
}

/// Converts byte offsets into 1-based line and character column.
struct LineIndex<'s> {
    source: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    fn new(source: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Self { source, line_starts }
    }

    fn position(&self, offset: u32) -> (u32, u32) {
        let offset = (offset as usize).min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset).saturating_sub(1);
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self.source.get(start..offset).map_or(0, |prefix| prefix.chars().count());
        (u32::try_from(line + 1).unwrap_or(u32::MAX), u32::try_from(column + 1).unwrap_or(u32::MAX))
    }

    fn diagnostic(&self, rule: &'static str, message: String, offset: u32) -> Diagnostic {
        let (line, column) = self.position(offset);
        Diagnostic { rule, message, line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(code: &str) -> Vec<(&'static str, u32, u32)> {
        validate_block(code).errors.iter().map(|d| (d.rule, d.line, d.column)).collect()
    }

    #[test]
    fn accepts_the_three_function_forms() {
        for code in [
            "function f(storefront, helpers) { return ''; }",
            "const f = function (a) { return ''; };",
            "const f = (products, h) => '';",
            "(ctx) => ''",
        ] {
            assert!(validate_block(code).is_ok(), "{code}: {:?}", validate_block(code));
        }
    }

    #[test]
    fn finds_forbidden_constructs() {
        assert_eq!(
            rules("function f() {\n  return obj.constructor.constructor('x')();\n}"),
            [("no-constructor-chain", 2, 14), ("no-constructor-chain", 2, 26)]
        );
        assert_eq!(
            rules("function f() { return a['constructor'][`constructor`]; }"),
            [("no-constructor-chain", 1, 25), ("no-constructor-chain", 1, 40)]
        );
    }

    /// Every route to the Function constructor, code generation or the global object a block
    /// could write, with the rule that refuses it (body of `function f(ctx) { … }`, line 2).
    #[test]
    fn refuses_every_route_to_code_generation_and_host_objects() {
        let cases: &[(&str, &str)] = &[
            ("return (function () {}).constructor('return 1')();", "no-constructor-chain"),
            ("return (async () => {}).constructor('return 1');", "no-constructor-chain"),
            ("return (function* () {}).constructor('yield 1');", "no-constructor-chain"),
            ("return (async function* () {}).constructor('yield 1');", "no-constructor-chain"),
            ("return ctx['constr' + 'uctor'];", "no-constructor-chain"),
            ("return ctx[`constr` + 'uctor'];", "no-constructor-chain"),
            ("const { constructor } = () => 1; return constructor;", "no-constructor-chain"),
            ("const { constructor: c } = () => 1; return c;", "no-constructor-chain"),
            ("const { ['constr' + 'uctor']: c } = () => 1; return c;", "no-constructor-chain"),
            ("let c; ({ constructor: c } = () => 1); return c;", "no-constructor-chain"),
            ("let constructor; ({ constructor } = () => 1); return constructor;", "no-constructor-chain"),
            ("const k = 'constructor'; return ctx[k];", "no-constructor-chain"),
            ("const k = ctx.block.id; return (() => 1)[k];", "no-constructor-chain"),
            ("return Object.getPrototypeOf(async () => {});", "no-proto"),
            ("return Object.setPrototypeOf(ctx, null);", "no-proto"),
            ("return ctx.__proto__;", "no-proto"),
            ("return ({}).__lookupGetter__('x');", "no-proto"),
            ("return Reflect.construct(Array, []);", "no-reflect"),
            ("return Object.getOwnPropertyDescriptors(ctx);", "no-reflect"),
            ("return eval('1');", "no-eval"),
            ("const e = eval; return e('1');", "no-eval"),
            ("return (0, eval)('1');", "no-eval"),
            ("return new Function('return 1')();", "no-function-constructor"),
            ("return typeof WebAssembly;", "no-wasm"),
            ("return Atomics.wait(ctx, 0, 0);", "no-atomics"),
            ("return new SharedArrayBuffer(8);", "no-atomics"),
            ("return import('x');", "no-import"),
            ("return import.meta.url;", "no-import"),
            ("return globalThis.fetch;", "no-globalthis"),
            ("return this;", "no-this"),
            ("function g() { return this; } return g();", "no-this"),
            ("const o = { m() { return this; } }; const m = o.m; return m();", "no-this"),
            ("return arguments.callee;", "no-callee"),
            ("return f.caller;", "no-callee"),
            ("with (ctx) { return a; }", "no-with"),
            ("Error.prepareStackTrace = (e, s) => s; return '';", "no-host-objects"),
        ];
        for (body, rule) in cases {
            let found = rules(&format!("function f(ctx) {{\n  {body}\n}}"));
            assert!(found.iter().any(|(r, line, _)| r == rule && *line == 2), "{body}: {found:?}");
        }
        // Top-level `this`: an arrow at the top level gets the script's, the global object.
        assert_eq!(rules("(ctx) => this"), [("no-this", 1, 10)]);
    }

    #[test]
    fn accepts_ordinary_code() {
        for body in [
            "'use strict'; function g() { return this; } return String(g());",
            "class A { constructor() { this.x = 1; } get y() { return this.x; } static make() { return new this(); } } return String(A.make().y);",
            "const self = { name: 'x' }; const top = 1; return self.name + top + typeof fetch + typeof window;",
            "const o = { constructor: 1, 'toString': 2 }; return String(o.toString);",
            "const arr = [1, 2]; let s = 0; for (let i = 0; i < arr.length; i++) s += arr[i]; return String(s + arr['length']);",
            "const key = 'item_' + ctx.block.id; return String(ctx.config[key]);",
            "return Array.prototype.map.call([1], (x) => x * 2).join(',');",
            "return `<p>${ctx.config.text}</p>`;",
            "return (function () { 'use strict'; return this === undefined; })() ? 'y' : 'n';",
            "const fn = () => 1; return String(fn[0]);",
        ] {
            let code = format!("function f(ctx) {{\n  {body}\n}}");
            assert!(validate_block(&code).is_ok(), "{body}: {:?}", validate_block(&code));
        }
    }

    #[test]
    fn binding_by_name() {
        let (_, f) = analyse_block("function renderHero(storefront, helpers) { return ''; }");
        let f = f.expect("function");
        assert_eq!(f.name.as_deref(), Some("renderHero"));
        assert_eq!(f.argument_binding(), Some(vec![BlockArg::Storefront, BlockArg::Helpers]));
        let (_, f) = analyse_block("function x(a, helpers) { return ''; }");
        assert_eq!(f.expect("function").argument_binding(), None);
    }
}
