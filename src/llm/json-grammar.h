// Grammars for constrained generation: a GBNF grammar (the format of llama.cpp's grammar
// sampler) whose sentences are the JSON texts a JSON Schema accepts, and one for a tool call
// in the form Parley asks models to write:
//
//   <tool_call>{"name": "NAME", "arguments": {...}}</tool_call>
//
// The schema subset: type (object, array, string, number, integer, boolean, null, or a list
// of them), properties + required (properties in the schema's order; required ones always,
// the others optional), additionalProperties false or absent (no other keys are generated),
// items, minItems/maxItems, enum, const, anyOf/oneOf, minLength/maxLength, $ref into $defs or
// definitions; anything it does not constrain is any JSON value of that type. Pure functions;
// any thread.
#pragma once

#include "llm/tools.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace parley {

// The grammar's root accepts exactly the JSON the schema accepts (within the subset). Throws
// std::invalid_argument for a schema that is not an object or boolean, or a $ref it cannot
// follow.
std::string json_schema_grammar(const nlohmann::json &schema);

// One tool call to one of `tools` (or to `only` when it names one), its arguments by the
// tool's schema. Throws std::invalid_argument as above, or when `only` is not among them.
std::string tool_call_grammar(const std::vector<tool_spec> &tools, const std::string &only = {});

// A GBNF string literal for `text` (quoted, escaped).
std::string gbnf_literal(const std::string &text);

} // namespace parley
