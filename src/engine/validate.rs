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

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    ArrowFunctionExpression, BindingPattern, ComputedMemberExpression, Expression,
    FormalParameters, IdentifierReference, ImportExpression, ModuleDeclaration, ObjectProperty,
    PropertyKey, Statement, StaticMemberExpression, WithStatement,
};
use oxc_ast_visit::{walk, Visit};
use oxc_parser::Parser;
use oxc_span::{GetSpan, SourceType, Span};
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
        self.errors
            .iter()
            .map(|d| format!("{} at {}:{}: {}", d.rule, d.line, d.column, d.message))
            .collect::<Vec<_>>()
            .join("; ")
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
        self.params
            .iter()
            .map(|p| p.as_deref().and_then(BlockArg::from_param_name))
            .collect()
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
        let mut rules = RuleVisitor { positions: &positions, errors: Vec::new() };
        rules.visit_program(&parsed.program);
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
            validation.warnings.push(positions.diagnostic(
                "positional-arguments",
                "some parameter names are not recognised, so the block is called with \
                 (storefront, products, helpers, ctx) in that order"
                    .into(),
                u32::try_from(function.span.start).unwrap_or(0),
            ));
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
    BlockFunction {
        name: None,
        params: param_names(&arrow.params),
        has_rest: arrow.params.rest.is_some(),
        span: span_range(arrow.span),
    }
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

/// Walks the whole program and records forbidden constructs.
struct RuleVisitor<'p> {
    positions: &'p LineIndex<'p>,
    errors: Vec<Diagnostic>,
}

impl RuleVisitor<'_> {
    fn error(&mut self, rule: &'static str, message: &str, span: Span) {
        self.errors.push(self.positions.diagnostic(rule, message.to_string(), span.start));
    }

    /// Records `__proto__` and `constructor.constructor` for a member access whose property
    /// name is statically known.
    fn check_member(&mut self, object: &Expression<'_>, property: &str, span: Span) {
        if property == "__proto__" {
            self.error("no-proto", "`__proto__` is not allowed", span);
        }
        if property == "constructor" && static_property_name(object) == Some("constructor") {
            self.error(
                "no-constructor-chain",
                "`constructor.constructor` reaches the Function constructor and is not allowed",
                span,
            );
        }
    }
}

/// The property name of `object` if it is itself a member access with a static name
/// (`a.b`, `a["b"]`, ``a[`b`]``).
fn static_property_name<'e>(expression: &'e Expression<'_>) -> Option<&'e str> {
    match expression {
        Expression::StaticMemberExpression(member) => Some(member.property.name.as_str()),
        Expression::ComputedMemberExpression(member) => constant_string(&member.expression),
        Expression::ParenthesizedExpression(inner) => static_property_name(&inner.expression),
        Expression::ChainExpression(chain) => chain.expression.as_member_expression().and_then(|m| match m {
            oxc_ast::ast::MemberExpression::StaticMemberExpression(s) => Some(s.property.name.as_str()),
            oxc_ast::ast::MemberExpression::ComputedMemberExpression(c) => constant_string(&c.expression),
            _ => None,
        }),
        _ => None,
    }
}

/// The value of a string literal or a template literal without substitutions.
fn constant_string<'e>(expression: &'e Expression<'_>) -> Option<&'e str> {
    match expression {
        Expression::StringLiteral(literal) => Some(literal.value.as_str()),
        Expression::TemplateLiteral(template) if template.expressions.is_empty() => {
            template.quasis.first().and_then(|q| q.value.cooked.as_ref()).map(|s| s.as_str())
        }
        Expression::ParenthesizedExpression(inner) => constant_string(&inner.expression),
        _ => None,
    }
}

impl<'a> Visit<'a> for RuleVisitor<'_> {
    fn visit_identifier_reference(&mut self, it: &IdentifierReference<'a>) {
        match it.name.as_str() {
            "eval" => self.error("no-eval", "`eval` is not allowed", it.span),
            "Function" => self.error("no-function-constructor", "the `Function` constructor is not allowed", it.span),
            "require" => self.error("no-import", "`require` is not available in blocks", it.span),
            "globalThis" => self.error("no-globalthis", "`globalThis` is not allowed", it.span),
            _ => {}
        }
    }

    fn visit_import_expression(&mut self, it: &ImportExpression<'a>) {
        self.error("no-import", "dynamic `import()` is not available in blocks", it.span);
        walk::walk_import_expression(self, it);
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
        self.check_member(&it.object, it.property.name.as_str(), it.property.span);
        walk::walk_static_member_expression(self, it);
    }

    fn visit_computed_member_expression(&mut self, it: &ComputedMemberExpression<'a>) {
        if let Some(property) = constant_string(&it.expression) {
            self.check_member(&it.object, property, it.expression.span());
        }
        walk::walk_computed_member_expression(self, it);
    }

    fn visit_object_property(&mut self, it: &ObjectProperty<'a>) {
        let key = match &it.key {
            PropertyKey::StaticIdentifier(id) => Some(id.name.as_str()),
            PropertyKey::StringLiteral(literal) => Some(literal.value.as_str()),
            _ => None,
        };
        if key == Some("__proto__") {
            self.error("no-proto", "`__proto__` is not allowed", it.key.span());
        }
        walk::walk_object_property(self, it);
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
        assert_eq!(rules("function f() {\n  return obj.constructor.constructor('x')();\n}"), [("no-constructor-chain", 2, 26)]);
        assert_eq!(rules("function f() { return a['constructor'][`constructor`]; }"), [("no-constructor-chain", 1, 40)]);
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
