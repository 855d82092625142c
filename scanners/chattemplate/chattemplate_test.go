package chattemplate

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/modelseal/modelseal/pkg/finding"
	"github.com/modelseal/modelseal/pkg/policy"
	"github.com/modelseal/modelseal/pkg/scan"
)

// Benign templates in the styles real models ship (written for these tests).
var benign = map[string]string{
	"chatml": `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}`,

	"llama3": `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`,

	"llama3.1 tools": `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}{{- ", " }}{%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", "parameters": ' + tool_call.arguments | tojson + "}" }}
        {%- endif %}
        {{- "<|eom_id|>" if builtin_tools is defined else "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}{{- message.content | tojson }}{%- else %}{{- message.content }}{%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}`,

	"qwen tools": `{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>" }}
    {%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content.split('</think>')[-1].lstrip('\n') if '</think>' in message.content else message.content %}
        {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- for tool_call in message.tool_calls if message.tool_calls %}
            {%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}`,

	"mistral": `{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}`,

	"gemma": `{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}`,

	"prose mentions attack words outside code": `{# do not import os or call eval here #}You are a helpful assistant. Never run os.popen or __import__.{% for m in messages %}{{ m.content }}{% endfor %}`,

	"dict literal with nested braces": `{{ {'role': {'name': 'user'}} | tojson }}{% for m in messages %}{{ m['content'] }}{% endfor %}`,
}

// Hostile templates: server-side template injection payloads.
var hostile = []struct {
	name     string
	tpl      string
	sev      finding.Severity
	patterns []string // at least these
}{
	{"CVE-2024-34359 subclasses walk",
		`{% for x in ().__class__.__base__.__subclasses__() %}{% if "warning" in x.__name__ %}{{x()._module.__builtins__['__import__']('os').popen("touch /tmp/modelseal-harmless")}}{%endif%}{% endfor %}`,
		finding.Critical, []string{"__class__", "__base__", "__subclasses__", "__builtins__", "__import__", "popen", "._module"}},
	{"self init globals",
		`{{ self.__init__.__globals__.__builtins__.__import__('os').popen('echo modelseal-harmless').read() }}`,
		finding.Critical, []string{"self", "__init__", "__globals__", "__builtins__", "popen", ".read()"}},
	{"TemplateReference context",
		`{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read() }}`,
		finding.Critical, []string{"._TemplateReference__context", "__globals__", "os"}},
	{"lipsum globals", `{{ lipsum.__globals__['os'].popen('id').read() }}`,
		finding.Critical, []string{"lipsum", "__globals__", "popen"}},
	{"cycler", `{{ cycler.__init__.__globals__.os.popen('id').read() }}`, finding.Critical, []string{"cycler", "__init__", "os"}},
	{"joiner", `{{ joiner.__init__.__globals__ }}`, finding.Critical, []string{"joiner", "__init__"}},
	{"namespace escape", `{% set ns = namespace() %}{{ ns.__init__.__globals__ }}`, finding.Critical, []string{"namespace", "__globals__"}},
	{"attr filter with escaped dunder", `{{ ()|attr('\x5f\x5fclass\x5f\x5f') }}`, finding.High, []string{"|attr", "__class__"}},
	{"attr call", `{{ attr(x, "__class__") }}`, finding.High, []string{"attr(", "__class__"}},
	{"mro", `{{ ''.__class__.mro()[1].__subclasses__() }}`, finding.Critical, []string{"mro", "__class__"}},
	{"private subscript", `{{ x['_module'] }}`, finding.High, []string{"['_module']"}},
	{"flask config", `{{ config.items() }}`, finding.Medium, []string{"config"}},
	{"flask request", `{{ request.application }}`, finding.Medium, []string{"request"}},
	{"include", `{% include '/etc/passwd' %}`, finding.Medium, []string{"{% include %}"}},
	{"from import", `{% from 'x.j2' import m %}`, finding.Medium, []string{"{% from %}"}},
	{"getattr", `{{ getattr(messages, 'x') }}`, finding.Critical, []string{"getattr"}},
	{"eval", `{{ eval('1') }}`, finding.Critical, []string{"eval"}},
	{"subprocess", `{{ x.subprocess.check_output('id') }}`, finding.Critical, []string{"subprocess"}},
	{"bare os", `{{ os }}`, finding.High, []string{"os"}},
	{"whitespace-controlled", "{%- for m in messages -%}{{- m.__class__ -}}{%- endfor -%}", finding.Critical, []string{"__class__"}},
	{"unterminated block still checked", `{{ self.__init__`, finding.Critical, []string{"__init__"}},
}

func TestBenign(t *testing.T) {
	for name, tpl := range benign {
		t.Run(name, func(t *testing.T) {
			for _, h := range Check(tpl) {
				if h.Severity > finding.Info {
					t.Errorf("%s: %+v", name, h)
				}
			}
		})
	}
	hits := Check(benign["qwen tools"])
	if len(hits) != 1 || hits[0].Pattern != "namespace" || hits[0].Severity != finding.Info {
		t.Errorf("qwen template: want namespace at info only, got %+v", hits)
	}
}

func TestHostile(t *testing.T) {
	for _, tt := range hostile {
		t.Run(tt.name, func(t *testing.T) {
			hits := Check(tt.tpl)
			var got []string
			sev := finding.Info
			for _, h := range hits {
				got = append(got, h.Pattern)
				sev = max(sev, h.Severity)
			}
			for _, p := range tt.patterns {
				if !slices.Contains(got, p) {
					t.Errorf("pattern %q not found in %v", p, got)
				}
			}
			if sev != tt.sev {
				t.Errorf("severity %v, want %v: %+v", sev, tt.sev, hits)
			}
		})
	}
}

func TestReport(t *testing.T) {
	tpl := hostile[1].tpl
	var f scan.File
	env := scan.NewEnv(policy.Default(), scan.Limits{}, nil, &f)
	in := scan.Input{R: bytes.NewReader(nil), Loc: finding.Location{Path: "m.gguf", Offset: -1}}
	sum := Report(env, in, 100, "tokenizer.chat_template", tpl)
	if sum != Sum(tpl) || len(sum) != 64 {
		t.Fatalf("sum %q", sum)
	}
	off := int64(100 + strings.Index(tpl, "__init__"))
	var found bool
	for _, x := range f.Findings {
		if x.Rule != Rule || x.Evidence["sha256"] != sum || x.Evidence["template"] != "tokenizer.chat_template" {
			t.Errorf("finding %+v", x)
		}
		if x.Evidence["pattern"] == "__init__" && x.Location.Offset == off && x.Severity == finding.Critical {
			found = true
		}
	}
	if !found {
		t.Errorf("no critical __init__ finding at %d: %v", off, f.Findings)
	}
}

func FuzzCheck(f *testing.F) {
	for _, tpl := range benign {
		f.Add(tpl)
	}
	for _, h := range hostile {
		f.Add(h.tpl)
	}
	f.Fuzz(func(t *testing.T, tpl string) {
		for _, h := range Check(tpl) {
			if h.Off < 0 || h.Off >= len(tpl) || h.Count < 1 || h.Pattern == "" {
				t.Fatalf("bad hit %+v", h)
			}
		}
	})
}
