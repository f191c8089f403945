// The inputs of a deployment's parameter form, one per property of its `parameter_schema` (Prefect's
// OpenAPI parameter schema), and the type check that runs before anything is sent: a wrong-typed
// value is reported next to its field.

import { h, setText } from "./dom.js";

const TYPE_HINTS = {
  int: "whole number",
  float: "number",
  bool: "true / false",
  str: "text",
  list: "JSON list",
  dict: "JSON object",
  any: "JSON value (other text is sent as a string)",
  none: "JSON value (other text is sent as a string)",
};

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A parameter's input, label, help and error line; `read()` -> {value} | {omit} | {error}. */
export class ParameterField {
  constructor(name, spec, initial) {
    this.name = name;
    this.type = spec.type in TYPE_HINTS ? spec.type : "any";
    this.required = Boolean(spec.required);
    this.initial = initial;
    const id = `param-${name}`;
    this.input = this.makeInput(id, initial);
    this.error = h("div", { class: "field-error", "data-testid": `error-${name}`, id: `error-${name}`, role: "alert" });
    this.input.setAttribute("aria-describedby", `error-${name}`);
    this.row = h("div", { class: "field", "data-param": name },
      h("label", { for: id }, name,
        this.required ? h("span", { class: "required", title: "required" }, "*") : null,
        h("span", { class: "type" }, TYPE_HINTS[this.type])),
      this.input,
      spec.help ? h("div", { class: "help" }, spec.help) : null,
      this.error);
  }

  makeInput(id, initial) {
    const attrs = { id, name: this.name, "data-testid": id };
    if (this.required) attrs["aria-required"] = "true";
    switch (this.type) {
      case "int":
      case "float":
        return h("input", { ...attrs, type: "number", step: "any", value: initial ?? "" });
      case "bool":
        return h("input", { ...attrs, type: "checkbox", checked: Boolean(initial) });
      case "str":
        return h("input", { ...attrs, type: "text", value: initial ?? "" });
      default: {
        let text = initial === undefined || (initial === null && this.type !== "none") ? "" : JSON.stringify(initial);
        if (text.length > 60) text = JSON.stringify(initial, null, 2);
        return h("textarea", { ...attrs, rows: Math.min(8, Math.max(2, text.split("\n").length)), value: text });
      }
    }
  }

  /** The value to send, or {omit: true} (left empty: the deployment's default applies), or {error}. */
  read() {
    const { name, type } = this;
    if (type === "bool") return { value: this.input.checked };
    const raw = this.input.value;
    const text = raw.trim();
    if (type === "int" || type === "float") {
      if (this.input.validity && this.input.validity.badInput) {
        return { error: `${name} must be ${type === "int" ? "a whole number" : "a number"}.` };
      }
      if (text === "") return this.empty();
      const number = Number(text);
      if (type === "int" && !Number.isInteger(number)) return { error: `${name} must be a whole number (got ${text}).` };
      if (!Number.isFinite(number)) return { error: `${name} must be a number (got ${text}).` };
      return { value: number };
    }
    if (type === "str") {
      if (raw === "" && (this.initial === null || this.initial === undefined)) return this.empty();
      return { value: raw };
    }
    if (text === "") return this.empty();
    let value;
    try {
      value = JSON.parse(text);
    } catch (exc) {
      if (type === "list" || type === "dict") {
        const example = type === "list" ? "a JSON list, e.g. [1, 2]" : 'a JSON object, e.g. {"a": 1}';
        return { error: `${name} must be ${example} (${exc.message}).` };
      }
      return { value: raw }; // any / none: plain text is a string
    }
    if (type === "list" && !Array.isArray(value)) return { error: `${name} must be a JSON list, e.g. [1, 2].` };
    if (type === "dict" && !isPlainObject(value)) return { error: `${name} must be a JSON object, e.g. {"a": 1}.` };
    return { value };
  }

  empty() {
    return this.required ? { error: `${this.name} is required.` } : { omit: true };
  }

  showError(message) {
    setText(this.error, message || "");
    if (message) this.input.setAttribute("aria-invalid", "true");
    else this.input.removeAttribute("aria-invalid");
  }
}

/** The form type of a JSON-schema property (Prefect's parameter schema): int, float, bool, str,
 * list, dict or any; an optional type (`anyOf` with null) is its non-null type. */
export function formType(prop, definitions = {}) {
  let spec = prop || {};
  const ref = (s) => (s && s.$ref ? definitions[s.$ref.split("/").pop()] || {} : s);
  spec = ref(spec);
  if (Array.isArray(spec.anyOf)) {
    const options = spec.anyOf.map(ref).filter((option) => option.type !== "null");
    if (options.length !== 1) return "any";
    spec = options[0];
  }
  if (Array.isArray(spec.enum)) return spec.type === "string" ? "str" : "any";
  const types = { integer: "int", number: "float", boolean: "bool", array: "list", object: "dict" };
  if (spec.type === "string") return spec.format === "binary" ? "any" : "str";
  return types[spec.type] || "any";
}

/** The fields of a deployment: its parameter schema in position order, plus any default parameter
 * the schema does not list. */
export function fieldsFor(deployment) {
  const schema = deployment.parameter_schema || {};
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const defaults = deployment.parameters || {};
  const names = Object.keys(properties).sort((a, b) => (properties[a].position ?? 0) - (properties[b].position ?? 0));
  for (const key of Object.keys(defaults)) if (!(key in properties)) names.push(key);
  return names.map((key) => {
    const prop = properties[key] || {};
    const spec = { type: formType(prop, schema.definitions), required: required.has(key), help: prop.description };
    const initial = key in defaults ? defaults[key] : prop.default;
    return new ParameterField(key, spec, initial);
  });
}

/** Check every field; {parameters} when all are fine, else {errors: {name: message}}. */
export function collect(fields) {
  const parameters = {};
  const errors = {};
  for (const field of fields) {
    const result = field.read();
    if (result.error) errors[field.name] = result.error;
    else if (!result.omit) parameters[field.name] = result.value;
  }
  return Object.keys(errors).length ? { errors } : { parameters };
}
